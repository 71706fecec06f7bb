"""Frame sources for napari Image layers that did not come from the plugin's video reader.

`source_from_layer(layer)` turns any Image layer with a time axis (grey uint8 /
uint16 / float, RGB, multichannel; numpy, dask or zarr; any reader) into an
`io.arrays.ArraySource`: frames are read on demand, intensities are mapped to
8-bit RGB through the layer's contrast limits by default (what the user sees is
what the networks see), and the layer's scale travels along. The layer is only
read duck-typed (data, rgb, contrast_limits, scale, metadata, name): this
module imports no napari and no Qt.
"""
from __future__ import annotations

from ..io.arrays import ArraySource

__all__ = ["ArraySource", "source_from_layer"]


def source_from_layer(layer, channel=None, contrast_limits="layer", axes: str | None = None, fps: float | None = None):
    """An ArraySource over an Image layer's data.

    contrast_limits: "layer" (default) the layer's own, None for the library's
    rule (uint8 as is, else percentiles of sampled frames), or explicit limits.
    axes: as in ArraySource; default metadata["axes"] when the reader left one,
    else inferred from the shape and layer.rgb.
    """
    meta = dict(getattr(layer, "metadata", None) or {})
    data = layer.data
    rgb = bool(getattr(layer, "rgb", False))
    axes = axes or meta.get("axes")
    limits = None
    if isinstance(contrast_limits, str) and contrast_limits == "layer":
        # napari's RGB layers of uint8 data keep (0, 255): identical to the uint8 rule
        cl = getattr(layer, "contrast_limits", None)
        limits = None if cl is None else tuple(float(v) for v in cl)
    elif contrast_limits is not None:
        limits = contrast_limits
    scale = _layer_scale(tuple(getattr(layer, "scale", ())), rgb)
    return ArraySource(data, fps=float(fps or meta.get("fps") or 25.0), rgb=rgb,
                       name=f"layer {getattr(layer, 'name', '')!r}", axes=axes, channel=channel,
                       contrast_limits=limits, scale=scale, units=meta.get("units"),
                       path=meta.get("vidseg_tiff_path"))


def _layer_scale(scale: tuple, rgb: bool) -> dict | None:
    """napari's layer.scale lists the layer's dimensions (an RGB layer's colour axis is not one):
    the last two are Y and X and the first is time."""
    if len(scale) < 3:
        return None
    return {"T": float(scale[0]), "Y": float(scale[-2]), "X": float(scale[-1])}
