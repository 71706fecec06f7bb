"""The classic baseline: OpenCV's GrabCut (Rother et al. 2004) driven by the
same click robot as our network (the paper's comparison).

Protocol (also in docs/interactive.md):
* No rectangle: the robot gives clicks only. Before the first GrabCut call the
  label map is GC_PR_BGD everywhere, GC_PR_FGD inside a disk of radius
  `prior_radius` x image diagonal (0.15) around each positive click.
* Every click becomes a hard disk of radius `click_radius` (5 px): GC_FGD for
  positive clicks, GC_BGD for negative ones.
* The first call initialises the colour models from that map
  (GC_INIT_WITH_MASK); later calls keep the label map GrabCut returned and its
  colour models, add the new click's disk and resume (GC_EVAL).
  `iterations` (5) GrabCut iterations per click.
* Refinement mode: a start mask replaces the disk prior (GC_PR_FGD inside it,
  GC_PR_BGD outside).
* The mask is GC_FGD | GC_PR_FGD.
"""
from __future__ import annotations

import numpy as np

from ..types import Click

try:  # optional dependency (the `eval` extra)
    import cv2
except ImportError:  # pragma: no cover - reported when the baseline is asked for
    cv2 = None


def require_cv2():
    if cv2 is None:
        from ..types import InputError

        raise InputError("the GrabCut baseline needs OpenCV: pip install opencv-python-headless")
    return cv2


class GrabCutClicker:
    """One image, clicks arriving one at a time; state carried between clicks."""

    def __init__(self, image: np.ndarray, start_mask: np.ndarray | None = None,
                 click_radius: int = 5, prior_radius: float = 0.15, iterations: int = 5):
        cv = require_cv2()
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        # OpenCV wants 8-bit, 3 channels, contiguous; BGR order like cv2.imread.
        self.image = np.ascontiguousarray(image[..., :3][..., ::-1].astype(np.uint8))
        self.h, self.w = self.image.shape[:2]
        self.click_radius = click_radius
        self.prior_radius = prior_radius * float(np.hypot(self.h, self.w))
        self.iterations = iterations
        self.labels: np.ndarray | None = None
        self.bgd = np.zeros((1, 65), np.float64)
        self.fgd = np.zeros((1, 65), np.float64)
        self.started = False
        if start_mask is not None:
            start = np.asarray(start_mask, bool)
            self.labels = np.where(start, cv.GC_PR_FGD, cv.GC_PR_BGD).astype(np.uint8)
        self._yy, self._xx = np.ogrid[:self.h, :self.w]

    def _disk(self, c: Click, radius: float) -> np.ndarray:
        return (self._xx - c.x) ** 2 + (self._yy - c.y) ** 2 <= radius * radius

    def add_click(self, click: Click) -> np.ndarray:
        """Add one click, run GrabCut, return the (H, W) bool mask."""
        cv = require_cv2()
        if self.labels is None:
            # First click and no start mask: the disk prior (only a positive
            # click says where the object is; a negative one leaves PR_BGD).
            self.labels = np.full((self.h, self.w), cv.GC_PR_BGD, np.uint8)
            if click.positive:
                self.labels[self._disk(click, self.prior_radius)] = cv.GC_PR_FGD
        self.labels[self._disk(click, self.click_radius)] = cv.GC_FGD if click.positive else cv.GC_BGD
        fg_like = (self.labels == cv.GC_FGD) | (self.labels == cv.GC_PR_FGD)
        if fg_like.all() or not fg_like.any():
            # GrabCut needs samples of both colour models; with only one there
            # is nothing to cut.
            return fg_like.copy()
        mode = cv.GC_EVAL if self.started else cv.GC_INIT_WITH_MASK
        try:
            cv.grabCut(self.image, self.labels, None, self.bgd, self.fgd, self.iterations, mode)
            self.started = True
        except cv.error:
            # e.g. a GMM component with too few samples: keep the labels as they are.
            pass
        return (self.labels == cv.GC_FGD) | (self.labels == cv.GC_PR_FGD)
