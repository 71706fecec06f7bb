"""napari-vidseg: interactive video object segmentation in napari.

The public API is imported lazily so that loading the napari manifest (or
`import napari_vidseg`) does not import torch.

    from napari_vidseg import VideoSource, VideoSession, InteractivePredictor
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "VideoSource": "napari_vidseg.io.video",
    "VideoSession": "napari_vidseg.video.session",
    "InteractivePredictor": "napari_vidseg.segment.predictor",
    "Click": "napari_vidseg.types",
    "Stroke": "napari_vidseg.types",
    "Interactions": "napari_vidseg.types",
    "InputError": "napari_vidseg.types",
    "attach": "napari_vidseg._napari.script",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_vidseg' has no attribute {name!r}")


def __dir__():
    return __all__
