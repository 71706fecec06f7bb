"""OSVOS: one-shot fine-tuning of the parent network, then propagation (the default method).

Several objects share one tuned copy of the parent with an output channel per
object (finetune.finetune_objects): one tuning and one forward pass per frame
for all of them (docs/video.md, session 19, says why). With one object it calls
the single-object functions (finetune.finetune, propagate.propagate), which
are the one-channel case of the same code. Self-training (a sparse first pass,
trusted frames, a second tuning) follows self_train.propagate_self_trained_objects.
"""
from __future__ import annotations

from typing import Any, Generator, Mapping

from ...types import Progress
from .base import MemoryCheckpoint, ObjectsFrame, Propagator, frame_progress

#: preset -> the FinetuneConfig options it changes (figures: docs/video.md)
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # one tuning, no second opinion: about twice as fast end to end, J about 4 lower cross-validated
    "fast": {"self_train": 0, "refine": False},
    # the mirror image averaged in: J +0.95 cross-validated (session 10), twice the network's time a frame
    "quality": {"flip": True},
}


def _read_frame(source, t: int):
    """Frame t decoded alone (tuning frames far apart must not each fill the chunk cache)."""
    from ..session import _iter_frames

    if hasattr(source, "iter_chunks") or hasattr(source, "frame"):
        return next(_iter_frames(source, t, t + 1))
    return source.frames(t, t + 1)[0]  # a (T, H, W, 3) array seen as a source


class OSVOS(Propagator):
    """config: a FinetuneConfig; parent: the parent network or a callable that
    loads it; refiner: the second opinion to reuse (None: made per pass)."""

    # Each frame's mask comes from the tuned network alone, except for the clean-up, which checks it against
    # the mask before it: a split range starts a few frames early so that its first mask has one.
    split = "frames"
    split_warmup = 8

    def tune(self, source, on: Mapping) -> Generator[Progress, None, Any]:
        """A network tuned on {obj: {t: mask}}; returns it."""
        from .. import finetune as ft

        objects = list(on)
        ts = sorted({t for o in objects for t in on[o]})
        frames = [_read_frame(source, t) for t in ts]
        if len(objects) == 1:
            (masks,) = on.values()
            return (yield from ft.finetune(self.parent(), frames, [masks[t] for t in ts], self.config))
        targets = [{o: on[o][t] for o in objects if t in on[o]} for t in ts]
        return (yield from ft.finetune_objects(self.parent(), frames, targets, objects, self.config))

    def fit(self, source, annotated: Mapping) -> Generator[Progress, None, None]:
        self.net = yield from self.tune(source, annotated)

    def predict(self, source, annotated: Mapping, frames: list[int], final: bool = True,
                message: str = "") -> Generator[Any, None, None]:
        yield from frame_progress(self._frames(self.net, source, annotated, frames, final), len(frames), message)

    def _frames(self, net, source, annotated: Mapping, frames: list[int], final: bool, previous=None):
        from .. import propagate as pr

        extra = {} if self.refiner is None else {"refiner": self.refiner}
        if previous is not None:
            extra["previous"] = previous
        if len(annotated) == 1:
            ((obj, masks),) = annotated.items()
            if previous is not None:
                extra["previous"] = lambda t: previous(obj, t)
            results, wanted = pr.propagate(net, source, masks, self.config, frames=frames, **extra), set(frames)
        else:
            results, wanted = pr.propagate_objects(net, source, annotated, self.config, frames=frames, **extra), None
        try:
            for r in results:
                if wanted is None:
                    r.final = final
                    yield ObjectsFrame(r.t, r.masks, r.probs, r.confidence, final)
                elif r.t in wanted:  # not the annotated frames it echoes back
                    yield ObjectsFrame(r.t, {obj: r.mask}, {obj: r.prob}, {obj: float(r.confidence)}, final)
        finally:
            results.close()

    def state(self):
        return self.net

    def load_state(self, state) -> None:
        self.net = state

    def fit_for_split(self, source, annotated: Mapping, frames: list[int], sink=None) -> Generator[Any, None, Any]:
        """The network the last pass propagates with: the tuning and, with self-training, the
        sparse first pass (its frames yielded, not final) and the second tuning."""
        from ..self_train import propagate_self_trained_objects

        box: dict = {}

        def chosen(trusted):
            box["final"] = True

        def run_pass(net, ts, message):
            if box.get("final"):  # the last pass is the split one: keep its network
                self.net = net
                return None, None
            return (yield from self._pass(net, source, annotated, ts, message, False, sink))

        yield from propagate_self_trained_objects(lambda on: self.tune(source, on), run_pass, annotated, frames,
                                                  self.config, _length(source), chosen=chosen)
        return self.state()

    def run(self, source, annotated: Mapping, frames: list[int], sink=None, checkpoint=None,
            skip=()) -> Generator[Any, None, None]:
        from ..self_train import propagate_self_trained_objects, trusted_message

        skip = set(skip)
        todo = [t for t in frames if t not in skip]
        if not todo:
            return
        checkpoint = checkpoint if checkpoint is not None else MemoryCheckpoint()
        if checkpoint.get("stage") == "final":  # resumed in the last pass: its tuning again, the missing frames
            trusted = checkpoint.get_masks("trusted") or {}
            trusted = {o: trusted.get(o, {}) for o in annotated}
            net = yield from self.tune(source, {o: {**trusted[o], **annotated[o]} for o in annotated})
            # Frames done before: their stored masks stand in for the clean-up of the frames after them.
            previous = None if sink is None or not skip else lambda o, t: sink.masks(o, [t])[t]
            yield from self._pass(net, source, annotated, todo, trusted_message(trusted), True, sink, previous)
            return
        state = {"final": False}

        def chosen(trusted):
            checkpoint.put_masks("trusted", trusted)
            checkpoint.put("stage", "final")
            state["final"] = True

        def run_pass(net, ts, message):
            return (yield from self._pass(net, source, annotated, ts, message, state["final"], sink))

        yield from propagate_self_trained_objects(lambda on: self.tune(source, on), run_pass, annotated, todo,
                                                  self.config, _length(source), chosen=chosen)

    def _pass(self, net, source, annotated, frames, message, final, sink, previous=None):
        """One propagation pass; returns what pseudo_annotations reads (first passes only)."""
        seen: dict = {o: {} for o in annotated}
        confidence: dict = {o: {} for o in annotated}
        for item in frame_progress(self._frames(net, source, annotated, frames, final, previous), len(frames),
                                   message):
            if sink is None and isinstance(item, ObjectsFrame) and not final:
                for o, m in item.masks.items():
                    seen[o][item.t] = m
                    confidence[o][item.t] = item.confidence.get(o)
            yield item
        # The pass left its last decoded chunks in the cache (up to 512 MB at 1080p), which a
        # second tuning's features would sit on top of: 2.2 GB peak on 1080p against 1.7 without.
        # After the last pass too: it also stops the open decode (an idle ffmpeg process of about
        # 200 MB at 1080p); the viewer decodes the frame it shows again (a fraction of a second).
        clear = getattr(source, "clear_cache", None)
        if clear is not None:
            clear()
        if final:
            return None, None
        if sink is not None:
            return ({o: sink.masks(o, sorted(set(frames) | set(annotated[o]))) for o in annotated},
                    {o: sink.confidence(o) for o in annotated})
        # In memory: the pass's frames (annotated ones among them included), as the single-object path echoes them.
        wanted = set(frames)
        return ({o: {**{t: m for t, m in annotated[o].items() if t in wanted}, **seen[o]} for o in annotated},
                confidence)


def _length(source) -> int:
    n = getattr(source, "n_frames", None)
    return int(n) if n is not None else len(source)
