"""The propagator protocol: what a propagation method implements.

    prop = Method.cls(config, parent=load_parent, refiner=None)
    for item in prop.run(source, annotated, frames, sink=sink, checkpoint=checkpoint, skip=done):
        ...  # Progress, or an ObjectsFrame to store (then a Progress that reports it)

`annotated` maps every requested object to its annotated frames {t: mask}
(objects may be annotated on different frames); `frames` are the frames to
segment (each object skips its own annotated ones). A method fits on the
annotated frames of all objects at once (`fit`), then segments frames in the
order it needs (`predict`), yielding each frame's masks for all the objects
it computed there. `run` strings the two together; a method with several
passes (OSVOS's self-training) overrides it.

The consumer (VideoSession, the headless job) stores what `run` yields and
gives back, through `sink`, what an earlier pass stored; `checkpoint` keeps
what a method needs to continue a run that was stopped (resume); `skip` holds
frames already done under the same inputs, which must not be computed again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator, Iterable, Mapping, Protocol

import numpy as np

from ...types import Progress


@dataclass
class ObjectsFrame:
    """One segmented frame: for each object computed on it its mask (H, W)
    bool, its probability map (any size, float16; optional) and its
    confidence in [0, 1]. final: False for a pass whose masks a later pass
    replaces (OSVOS's first, sparse pass)."""

    t: int
    masks: dict
    probs: dict = field(default_factory=dict)
    confidence: dict = field(default_factory=dict)
    final: bool = True


class Sink(Protocol):
    """What the consumer stored so far, read back by a method between passes."""

    def masks(self, obj, frames: Iterable[int]) -> Mapping[int, np.ndarray]: ...

    def confidence(self, obj) -> Mapping[int, float]: ...


class Checkpoint(Protocol):
    """A run's resumable state: JSON values and masks by key."""

    def get(self, key: str, default=None) -> Any: ...

    def put(self, key: str, value) -> None: ...

    def get_masks(self, key: str) -> dict | None: ...

    def put_masks(self, key: str, masks: Mapping) -> None: ...


class MemoryCheckpoint:
    """A Checkpoint that lives as long as the object (in-memory sessions, evaluation)."""

    def __init__(self):
        self._values: dict[str, Any] = {}

    def get(self, key, default=None):
        return self._values.get(key, default)

    def put(self, key, value) -> None:
        self._values[key] = value

    def get_masks(self, key):
        return self._values.get(("masks", key))

    def put_masks(self, key, masks) -> None:
        self._values[("masks", key)] = {o: dict(m) for o, m in masks.items()}


class Propagator:
    """Base class of the propagation methods; see the module docstring."""

    #: How one long video may be split over workers after one fit (video/split.py): "frames" (any frame
    #: ranges, each started `split_warmup` frames early: a mask depends on the frames before it only that
    #: far), "anchors" (only at annotated frames: the method goes frame by frame), None (not at all).
    split: str | None = "anchors"
    split_warmup: int = 0

    def __init__(self, config, parent=None, refiner=None):
        self.config = config
        self._parent = parent  # a network, or a callable that loads it (methods that need one)
        self.refiner = refiner

    def parent(self):
        if callable(self._parent) and not hasattr(self._parent, "parameters"):
            self._parent = self._parent()
        return self._parent

    def fit(self, source, annotated: Mapping) -> Generator[Progress, None, None]:
        """Learn the objects from their annotated frames ({obj: {t: mask}})."""
        return
        yield

    def predict(self, source, annotated: Mapping, frames: list[int]) -> Generator[Any, None, None]:
        """Yield an ObjectsFrame (then a Progress) for every frame some object needs."""
        raise NotImplementedError

    def fit_for_split(self, source, annotated: Mapping, frames: list[int],
                      sink: Sink | None = None) -> Generator[Any, None, Any]:
        """Everything `run` does before its last pass over `frames` (the fit; a method
        with several passes runs the earlier ones, yielding their frames as run does);
        returns the state predict needs (load_state), which a split run sends to the
        workers that propagate frame ranges."""
        yield from self.fit(source, annotated)
        return self.state()

    def state(self) -> Any:
        """What fit learnt, picklable (default: the propagator itself)."""
        return self

    def load_state(self, state) -> None:
        """Take the state another process's fit_for_split returned."""
        if state is not self:
            self.__dict__.update(state.__dict__)

    def run(self, source, annotated: Mapping, frames: list[int], sink: Sink | None = None,
            checkpoint: Checkpoint | None = None, skip: Iterable[int] = ()) -> Generator[Any, None, None]:
        """fit, then predict the frames not in `skip` (nothing at all when none is left)."""
        skip = set(skip)
        todo = [t for t in frames if t not in skip]
        if not todo:
            return
        yield from self.fit(source, annotated)
        yield from self.predict(source, annotated, todo)


def frame_progress(results, total: int, message: str = "") -> Generator[Any, None, None]:
    """Each ObjectsFrame of `results` followed by its Progress ("propagate",
    frames done of `total`), after a first Progress at 0; closes `results` when closed."""
    yield Progress("propagate", 0, total, message=message)
    done = 0
    try:
        for r in results:
            yield r
            done += 1
            yield Progress("propagate", done, total, frame=int(r.t), message=message)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
