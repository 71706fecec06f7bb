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
    """Run the plan above through `tune` and `run`; yields what they yield and
    returns the last pass's (masks, confidence)."""
    extra: dict[int, np.ndarray] = {}
    net = yield from tune(annotated)
    rounds = config.self_train_rounds if config.self_train else 0
    for r in range(rounds):
        masks, confidence = yield from run(net, quality.first_pass_frames(targets, config.first_pass_stride),
                                           "first pass" if r == 0 else f"pass {r + 1} of {rounds + 1}")
        new = quality.pseudo_annotations(masks, confidence, [*annotated, *extra], config.self_train, n_frames)
        if not new:  # nothing far enough from the frames already trusted: the last tuning serves
            break
        extra.update(new)
        net = yield from tune({**extra, **annotated})
    message = f"self-trained on frames {sorted(extra)}" if extra else ""
    return (yield from run(net, targets, message))
