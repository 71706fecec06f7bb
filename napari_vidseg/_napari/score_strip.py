"""A strip along the time axis: each frame's quality as a bar, so where the video
goes wrong shows at a glance; a click jumps to that frame.

Bars grow with the risk (1 - quality) and turn from green to red; annotated
frames carry a blue tick, the worst frames a red one, the frame in view a line.
With more frames than pixels each pixel column shows the worst frame under it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

HEIGHT = 44


class ScoreStrip(QWidget):
    def __init__(self, on_pick: Callable[[int], None] | None = None, parent=None):
        super().__init__(parent)
        self.on_pick = on_pick
        self.n_frames = 0
        self.scores = np.zeros(0)  # NaN where a frame has no score
        self.annotated: set[int] = set()
        self.worst: list[int] = []
        self.current = 0
        self.setFixedHeight(HEIGHT)
        self.setMinimumWidth(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        self.setToolTip("Frame quality after propagation: no bar = fine, tall red bar = probably wrong. "
                        "Blue ticks: frames you annotated; red ticks: the worst frames. Click to go to a frame.")

    # -- data --------------------------------------------------------------------------
    def set_scores(self, n_frames: int, scores: dict[int, float], annotated=(), worst=()) -> None:
        self.n_frames = int(n_frames)
        self.scores = np.full(self.n_frames, np.nan)
        for t, s in scores.items():
            if 0 <= int(t) < self.n_frames:
                self.scores[int(t)] = float(s)
        self.annotated = {int(t) for t in annotated}
        self.worst = [int(t) for t in worst]
        self.update()

    def clear(self) -> None:
        self.set_scores(self.n_frames, {})

    def set_current(self, t: int) -> None:
        if int(t) != self.current:
            self.current = int(t)
            self.update()

    # -- geometry ------------------------------------------------------------------------
    def frame_at(self, x: float) -> int:
        if self.n_frames <= 0:
            return 0
        return int(np.clip(x / max(self.width(), 1) * self.n_frames, 0, self.n_frames - 1))

    def _x(self, t: float) -> float:
        return t / max(self.n_frames, 1) * self.width()

    def bars(self) -> list[tuple[float, float, float]]:
        """(x, width, quality) of each bar: one per frame, or, with more frames than
        pixels, one per pixel column showing the lowest quality under it."""
        width = max(self.width(), 1)
        valid = np.flatnonzero(~np.isnan(self.scores))
        if len(valid) == 0:
            return []
        if self.n_frames <= width:
            step = width / self.n_frames
            return [(t * step, max(step, 1.0), float(self.scores[t])) for t in valid]
        cols = (valid * width) // self.n_frames
        lowest = np.full(width, np.inf)
        np.minimum.at(lowest, cols, self.scores[valid])
        return [(float(x), 1.0, float(lowest[x])) for x in np.flatnonzero(np.isfinite(lowest))]

    # -- Qt ------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        p = QPainter(self)
        try:
            w, h = self.width(), self.height()
            p.fillRect(0, 0, w, h, QColor(38, 41, 48))
            if self.n_frames == 0:
                return
            base = h - 4
            for x, bw, s in self.bars():
                risk = float(np.clip(1.0 - s, 0.0, 1.0))
                color = QColor.fromHsvF(0.33 * (1.0 - risk), 0.85, 0.9)
                top = base - max(risk * (base - 8), 1.0)
                p.fillRect(QRectF(x, top, bw, base - top), color)
            for ticks, color in ((self.annotated, QColor(80, 150, 255)), (self.worst, QColor(255, 70, 70))):
                p.setPen(QPen(color, 2))
                for t in ticks:
                    x = self._x(t + 0.5)
                    p.drawLine(QPointF(x, 0), QPointF(x, 6))
            p.setPen(QPen(QColor(255, 255, 255), 1))
            x = self._x(self.current + 0.5)
            p.drawLine(QPointF(x, 0), QPointF(x, h))
        finally:
            p.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.n_frames and self.on_pick is not None:
            self.on_pick(self.frame_at(event.position().x() if hasattr(event, "position") else event.x()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if not self.n_frames:
            return
        t = self.frame_at(event.position().x() if hasattr(event, "position") else event.x())
        s = self.scores[t]
        what = "not scored" if np.isnan(s) else f"quality {s:.2f}"
        if t in self.annotated:
            what += ", annotated"
        self.setToolTip(f"frame {t}: {what}")
