"""Dense-CRF boundary refinement (Krähenbühl & Koltun 2011) via pydensecrf.

Run on a crop around the object only: the CRF's cost is mostly set-up that
grows with the pixel count, and far from the object there is nothing to fix.

The set-up (the permutohedral lattices of the two pairwise kernels) depends
only on the image, not on the network's probabilities. A `PairwiseCache`
keeps the CRF built for one crop, so every later click on the same crop pays
only for its unary and the mean-field iterations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CRFParams:
    iterations: int = 5
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 40.0
    bilateral_srgb: float = 10.0
    bilateral_compat: float = 4.0
    # How much the CRF may move away from the network: probabilities are
    # clipped so the unary never becomes infinitely sure.
    prob_clip: float = 0.02
    # Crops with a longer side are scaled down to it for the CRF (and the
    # result scaled back): its set-up and each iteration cost grow with the
    # pixel count, and at this size it still works at a finer scale than the
    # network's stride-4 output. None: always at full resolution.
    max_side: int | None = 320


class PairwiseCache:
    """The CRF (with its pairwise terms) last built, and the key it was built
    for. The key names the image: the caller's (e.g. the crop's box on the
    current frame); a new image needs a new key or a new cache."""

    def __init__(self) -> None:
        self.key = None
        self.crf = None


def _pairwise(image: np.ndarray, params: CRFParams):
    import pydensecrf.densecrf as dcrf

    h, w = image.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                             rgbim=np.array(image[..., :3], dtype=np.uint8, order="C"),  # a writable copy: pydensecrf needs one
                             compat=params.bilateral_compat)
    return crf


def refine(image: np.ndarray, prob: np.ndarray, params: CRFParams = CRFParams(),
           cache: PairwiseCache | None = None, key=None) -> np.ndarray:
    """Foreground probability after mean-field inference. image: (H, W, 3) uint8,
    prob: (H, W) float in [0, 1]. Returns (H, W) float32. With a `cache` and a
    `key` naming `image`, the pairwise set-up is re-used while the key holds."""
    h, w = prob.shape
    if params.max_side and max(h, w) > params.max_side:
        return _refine_scaled(image, prob, params, cache, key)
    full_key = None if key is None else (key, h, w, params)
    if cache is not None and full_key is not None and cache.key == full_key:
        crf = cache.crf
    else:
        crf = _pairwise(image, params)
        if cache is not None:
            cache.key, cache.crf = full_key, crf
    p = np.clip(prob.astype(np.float32), params.prob_clip, 1 - params.prob_clip)
    unary = -np.log(np.stack([1 - p, p])).reshape(2, -1)
    # Replaces the previous unary; inference starts afresh from it each call.
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    q = np.array(crf.inference(params.iterations), dtype=np.float32).reshape(2, h, w)
    return q[1]


def _refine_scaled(image: np.ndarray, prob: np.ndarray, params: CRFParams,
                   cache: PairwiseCache | None = None, key=None) -> np.ndarray:
    """refine() at a scale where the long side is params.max_side; the kernels'
    pixel widths scale with it so the CRF means the same thing."""
    from dataclasses import replace

    from PIL import Image

    h, w = prob.shape
    s = params.max_side / max(h, w)
    sh, sw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
    small_img = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize((sw, sh), Image.BILINEAR))
    small_p = np.asarray(Image.fromarray(prob.astype(np.float32), mode="F").resize((sw, sh), Image.BILINEAR))
    scaled = replace(params, max_side=None, gauss_sxy=params.gauss_sxy * s, bilateral_sxy=params.bilateral_sxy * s)
    q = refine(small_img, small_p, scaled, cache, key)
    return np.asarray(Image.fromarray(q, mode="F").resize((w, h), Image.BILINEAR), dtype=np.float32)
