"""Drain a long job (a generator of Progress) in a script or the CLI, with a
text progress bar on stderr; returns the generator's return value."""
from __future__ import annotations

import sys
import time
from typing import Generator, TypeVar

from .types import Progress

R = TypeVar("R")


def drain(job: Generator[Progress, None, R], quiet: bool = False, stream=None) -> R:
    stream = stream or sys.stderr
    last_stage, t0, last_print = None, time.time(), 0.0
    try:
        while True:
            p = next(job)
            if quiet or not isinstance(p, Progress):
                continue
            now = time.time()
            if p.stage != last_stage:
                if last_stage is not None:
                    stream.write("\n")
                last_stage, t0 = p.stage, now
            if now - last_print > 0.2 or p.done == p.total:
                width = 30
                fill = int(width * p.fraction)
                # No rate until there is enough time to measure one.
                rate = f"{p.done / (now - t0):5.1f}/s" if now - t0 > 0.5 else "     -/s"
                stream.write(f"\r{p.stage:>10} [{'#' * fill}{'.' * (width - fill)}] "
                             f"{p.done}/{p.total} {rate} {p.message}"[:120])
                stream.flush()
                last_print = now
    except StopIteration as stop:
        if not quiet and last_stage is not None:
            stream.write("\n")
        return stop.value
