"""What the plot scripts share around their charts: a backend that needs no
display, and writing the figure (laid out, folder made, path printed).

    from figures import plt, save_figure   # scripts run as `python scripts/plot_x.py`
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported)


def save_figure(fig, out: Path, dpi: int = 120) -> None:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    print(out)
