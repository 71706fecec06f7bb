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


def refine(image: np.ndarray, prob: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Foreground probability after mean-field inference. image: (H, W, 3) uint8,
    prob: (H, W) float in [0, 1]. Returns (H, W) float32."""
    import pydensecrf.densecrf as dcrf

    h, w = prob.shape
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
