"""Plain data types shared by every layer of the package.

No torch, no napari: these are what the GUI, the CLI and scripts hand to the
library. Coordinates are in frame pixels as (x, y) = (column, row), floats, with
the pixel centre at integer values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence


class InputError(ValueError):
    """Bad input from the user (a path, a file, a coordinate).

    The message names the problem; the CLI and the widget show it without a
    traceback.
    """


class Provenance(str, Enum):
    """Where a frame's mask came from."""

    USER = "user"  # made interactively on this frame
    PROPAGATED = "propagated"  # predicted by the video network
    CORRECTED = "corrected"  # a propagated mask refined by the user

    @property
    def is_annotation(self) -> bool:
        """User and corrected masks are the ones the video network tunes on."""
        return self is not Provenance.PROPAGATED


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    positive: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise InputError(f"click coordinates must be finite numbers, got ({self.x}, {self.y})")

    def inside(self, height: int, width: int) -> bool:
        return -0.5 <= self.x < width - 0.5 and -0.5 <= self.y < height - 0.5


class StrokeKind(str, Enum):
    PATH = "path"  # a scribble: the drawn line marks pixels
    REGION = "region"  # a closed polygon: its whole inside is marked


@dataclass(frozen=True)
class Stroke:
    points: tuple[tuple[float, float], ...]  # (x, y) vertices
    positive: bool = True
    kind: StrokeKind = StrokeKind.PATH
    width: float = 3.0  # line width in pixels, paths only

    def __post_init__(self) -> None:
        pts = tuple((float(x), float(y)) for x, y in self.points)
        if not pts:
            raise InputError("a stroke needs at least one point")
        if not all(math.isfinite(v) for p in pts for v in p):
            raise InputError("stroke coordinates must be finite numbers")
        if self.kind is StrokeKind.REGION and len(pts) < 3:
            raise InputError("a highlighted region needs at least three vertices")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "kind", StrokeKind(self.kind))


@dataclass
class Interactions:
    """Everything the user did on one frame for one object, in order."""

    clicks: list[Click] = field(default_factory=list)
    strokes: list[Stroke] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.clicks or self.strokes)

    def copy(self) -> "Interactions":
        return Interactions(list(self.clicks), list(self.strokes))

    def check_inside(self, height: int, width: int) -> None:
        """Raise InputError naming the first click or stroke outside the frame."""
        for c in self.clicks:
            if not c.inside(height, width):
                raise InputError(
                    f"click at (x={c.x:.1f}, y={c.y:.1f}) is outside the {width}x{height} frame"
                )
        for s in self.strokes:
            if not any(Click(x, y).inside(height, width) for x, y in s.points):
                raise InputError(f"stroke starting at {s.points[0]} lies entirely outside the frame")

    def to_json(self) -> dict:
        return {
            "clicks": [[c.x, c.y, bool(c.positive)] for c in self.clicks],
            "strokes": [
                {"points": [list(p) for p in s.points], "positive": s.positive,
                 "kind": s.kind.value, "width": s.width}
                for s in self.strokes
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Interactions":
        return cls(
            clicks=[Click(float(x), float(y), bool(p)) for x, y, p in data.get("clicks", [])],
            strokes=[
                Stroke(tuple(tuple(p) for p in s["points"]), bool(s["positive"]),
                       StrokeKind(s["kind"]), float(s.get("width", 3.0)))
                for s in data.get("strokes", [])
            ],
        )


def clicks_from_arrays(xy: Iterable[Sequence[float]], positive: Iterable[bool]) -> list[Click]:
    return [Click(float(x), float(y), bool(p)) for (x, y), p in zip(xy, positive)]


@dataclass(frozen=True)
class Progress:
    """What long jobs (generators) yield: each yield is also a cancellation point."""

    stage: str  # e.g. "features", "finetune", "propagate", "export"
    done: int
    total: int
    frame: int | None = None  # the frame just finished, where there is one
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0
