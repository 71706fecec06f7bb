"""Dense-CRF boundary refinement (Krähenbühl & Koltun 2011) via pydensecrf.

Run on a crop around the object only: the CRF's cost is mostly set-up that
grows with the pixel count, and far from the object there is nothing to fix.
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


def refine(image: np.ndarray, prob: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Foreground probability after mean-field inference. image: (H, W, 3) uint8,
    prob: (H, W) float in [0, 1]. Returns (H, W) float32."""
    h, w = prob.shape
    if params.max_side and max(h, w) > params.max_side:
        return _refine_scaled(image, prob, params)
    import pydensecrf.densecrf as dcrf

    p = np.clip(prob.astype(np.float32), params.prob_clip, 1 - params.prob_clip)
    unary = -np.log(np.stack([1 - p, p])).reshape(2, -1)
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    crf.addPairwiseBilateral(sxy=params.bilateral_sxy, srgb=params.bilateral_srgb,
                             rgbim=np.array(image[..., :3], dtype=np.uint8, order="C"),  # a writable copy: pydensecrf needs one
                             compat=params.bilateral_compat)
    q = np.array(crf.inference(params.iterations), dtype=np.float32).reshape(2, h, w)
    return q[1]


def _refine_scaled(image: np.ndarray, prob: np.ndarray, params: CRFParams) -> np.ndarray:
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
    q = refine(small_img, small_p, scaled)
    return np.asarray(Image.fromarray(q, mode="F").resize((w, h), Image.BILINEAR), dtype=np.float32)
