"""Paired differences between two runs over the same sequences, as the
settings studies report them: the mean, its standard error and on how many
sequences the second run is better or worse.

    from paired_stats import paired_summary   # scripts run as `python scripts/x.py`
    s = paired_summary(new_j - base_j)         # points of J, one per sequence
    print(f"{s.mean:+.2f} (se {s.se:.2f}), better on {s.better}/{s.n}")
    print("\n".join(against_base({"a": j_a, "b": j_b}, "a")))   # J fractions per run, one per sequence
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

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


def against_base(scores: Mapping[str, Sequence[float]], base: str, width: int = 14,
                 base_label: str | None = None) -> list[str]:
    """One line per run: its mean J and its paired difference from run
    `base`, in points (`scores` holds J as fractions, one per sequence, in
    the same sequence order for every run)."""
    ref = 100 * np.asarray(scores[base], dtype=float)
    lines = []
    for name, values in scores.items():
        v = 100 * np.asarray(values, dtype=float)
        st = paired_summary(v - ref)
        lines.append(f"{name:{width}s} J {v.mean():5.2f}  against {base_label or base} {st.mean:+.2f} "
                     f"(se {st.se:.2f}), better on {st.better}/{st.n}")
    return lines
