"""Self-training: the order of tunings and propagation passes, shared by
`VideoSession.propagate` (which writes into the mask store) and `eval-video`
(which keeps masks in memory), so the product and its benchmark run the same
plan.

With `config.self_train = k > 0`:
1. tune on the annotated frames;
2. propagate every `config.first_pass_stride`-th frame (the first pass only has
   to find frames worth trusting);
3. take the k most trusted of those masks (`quality.pseudo_annotations`) as
   extra annotated frames and tune again; when none is far enough from the
   annotated frames (a short video), the first tuning serves again;
   with `config.self_train_rounds = r > 1`, steps 2-3 run r times, each round
   adding k frames away from those already chosen;
4. propagate every target frame.
With k = 0: one tuning, one pass. Cross-validated figures: FinetuneConfig.self_train.
"""
from __future__ import annotations

from typing import Any, Callable, Generator, Mapping

import numpy as np

from . import quality

#: tune(frames {t: mask}) -> a generator (of progress) that returns the tuned network
Tune = Callable[[Mapping[int, np.ndarray]], Generator[Any, None, Any]]
#: run(net, frames, message) -> a generator (of progress) that propagates `frames` and returns
#: (masks, confidence): mappings over those frames and the annotated ones
Run = Callable[[Any, list, str], Generator[Any, None, tuple[Mapping[int, np.ndarray], Mapping[int, float]]]]


def propagate_self_trained(tune: Tune, run: Run, annotated: Mapping[int, np.ndarray], targets: list[int],
                           config, n_frames: int) -> Generator[Any, None, tuple]:
    """Run the plan above for one object through `tune` and `run`; yields what
    they yield and returns the last pass's (masks, confidence)."""
    def tune_one(on):
        return (yield from tune(on[0]))

    def run_one(net, frames, message):
        masks, confidence = yield from run(net, frames, message)
        return {0: masks}, {0: confidence}

    masks, confidence = yield from propagate_self_trained_objects(tune_one, run_one, {0: annotated}, targets, config,
                                                                  n_frames)
    return masks[0], confidence[0]


def propagate_self_trained_objects(tune, run, annotated: Mapping, targets: list[int], config, n_frames: int,
                                   chosen=None) -> Generator[Any, None, tuple]:
    """The plan above for several objects: `annotated` maps each object to its
    annotated frames {t: mask}; tune(on) gets {obj: {t: mask}} (each object's
    annotated and trusted frames) and run returns ({obj: masks}, {obj: confidence}).
    Each object picks its own trusted frames. chosen(extra): called with the
    trusted frames {obj: {t: mask}} once they are final, before the last tuning
    (a resumable run records them)."""
    extra: dict = {o: {} for o in annotated}
    net = yield from tune(annotated)
    rounds = config.self_train_rounds if config.self_train else 0
    for r in range(rounds):
        masks, confidence = yield from run(net, quality.first_pass_frames(targets, config.first_pass_stride),
                                           "first pass" if r == 0 else f"pass {r + 1} of {rounds + 1}")
        new = {o: quality.pseudo_annotations(masks[o], confidence[o], [*annotated[o], *extra[o]], config.self_train,
                                             n_frames) for o in annotated}
        if not any(new.values()):  # nothing far enough from the frames already trusted: the last tuning serves
            break
        for o in annotated:
            extra[o].update(new[o])
        net = yield from tune({o: {**extra[o], **annotated[o]} for o in annotated})
    if chosen is not None:
        chosen(extra)
    return (yield from run(net, targets, trusted_message(extra)))


def trusted_message(extra: Mapping) -> str:
    """What the last pass's progress says about the trusted frames it was tuned on."""
    if not any(extra.values()):
        return ""
    if len(extra) == 1:
        return f"self-trained on frames {sorted(next(iter(extra.values())))}"
    return "self-trained on frames " + "; ".join(f"{o}: {sorted(e)}" for o, e in extra.items() if e)
