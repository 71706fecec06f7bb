"""Paired differences between two runs over the same sequences, as the
settings studies report them: the mean, its standard error and on how many
sequences the second run is better or worse.

    from paired_stats import paired_summary   # scripts run as `python scripts/x.py`
    s = paired_summary(new_j - base_j)         # points of J, one per sequence
    print(f"{s.mean:+.2f} (se {s.se:.2f}), better on {s.better}/{s.n}")
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedSummary:
    mean: float
    se: float  # standard error of the mean (nan for one sequence)
    better: int
    worse: int
    n: int


def paired_summary(differences) -> PairedSummary:
    d = np.asarray(differences, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return PairedSummary(float(d.mean()), se, int((d > 0).sum()), int((d < 0).sum()), len(d))
