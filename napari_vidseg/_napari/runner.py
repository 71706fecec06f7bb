"""Running the library's jobs off the GUI thread, and showing their progress.

* JobQueue: short session jobs (a click's segmentation, undo, storing paint) one
  at a time, in order; a newer job with the same key replaces a waiting one.
* ActivityBar: a long job's bar in napari's activity dock.
* guarded / guarded_gen: errors come back as values, so the widget reports them
  in one line instead of napari's traceback dialog.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Callable

from qtpy.QtCore import QTimer

from .llvm_guard import keep_triton_out

log = logging.getLogger(__name__)


class JobQueue:
    """Run short session jobs one at a time in worker threads, in submission order.

    Jobs with the same `key` that are still waiting are replaced by the newer one,
    so a burst of edits on one frame costs one run.
    """

    def __init__(self, on_error: Callable[[BaseException], None]):
        self._waiting: deque = deque()
        self._running = None
        self._on_error = on_error
        self.workers = []  # kept referenced until finished (Qt would drop them)

    @property
    def busy(self) -> bool:
        return self._running is not None or bool(self._waiting)

    def submit(self, fn, *args, on_done=None, key=None) -> None:
        if key is not None:
            self._waiting = deque(j for j in self._waiting if j[3] != key)
        self._waiting.append((fn, args, on_done, key))
        self._start_next()

    def _start_next(self) -> None:
        if self._running is not None or not self._waiting:
            return
        from napari.qt.threading import create_worker

        fn, args, on_done, _ = self._waiting.popleft()
        keep_triton_out()  # before any torch work in this viewer (see llvm_guard)
        worker = create_worker(guarded, fn, *args, _start_thread=False)
        self._running = worker

        def returned(value, on_done=on_done):
            ok, result = value
            if not ok:
                self._on_error(result)
            elif on_done is not None:
                try:
                    on_done(result)
                except Exception as e:  # drawing failed: report, keep the queue alive
                    log.exception("drawing a job result failed")
                    self._on_error(e)

        def finished(worker=worker):
            self._running = None
            if worker in self.workers:
                self.workers.remove(worker)
            self._start_next()

        worker.returned.connect(returned)
        worker.finished.connect(finished)
        self.workers.append(worker)
        worker.start()


class ActivityBar:
    """A long job's progress bar in napari's activity dock, drawn from a timer.

    napari's Qt progress bar calls ``QApplication.processEvents()`` whenever its
    value or description changes.  Updated straight from the worker's ``yielded``
    slot, that nested event loop ran the job's remaining queued signals (later
    frames, ``returned``, ``finished``) *inside* the slot, which then went on
    updating a bar that ``finished`` had closed (its Qt widget already queued
    for deletion: the crash), and overwrote the final status with a stale frame
    count.  So the widget's slots only record the latest progress here; a
    zero-delay timer hands it to napari from the top of the event loop, and a
    close that arrives during such an update waits until the update is over.
    """

    def __init__(self, desc: str):
        self.desc = desc
        self.latest = None
        self.bar = None
        self.stage = None
        self.closed = False
        self._pushing = False
        self._closing = False
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._push)

    def update(self, p) -> None:
        if self.closed or self._closing:
            return
        self.latest = p
        if not self._pushing and not self._timer.isActive():
            self._timer.start()

    def _push(self) -> None:
        if self.closed or self._closing or self._pushing:
            return
        from napari.utils import progress

        self._pushing = True
        p = self.latest
        try:
            if p is not None and not self._closing:
                self._show(p, progress)
        except Exception:  # a progress bar must never break the job
            log.debug("updating napari's progress bar failed", exc_info=True)
        finally:
            self._pushing = False
        if self._closing:
            self._close_now()
        elif self.latest is not p:  # newer progress came in during the update
            self._timer.start()

    def _show(self, p, progress) -> None:
        """Hand p to napari's bar through its public calls, which emit the events its
        Qt bar draws from (assigning ``n`` moved nothing: the dock showed 0 %).

        Each stage (tuning, first pass, propagation...) counts its own steps, so a new
        stage restarts the bar: its rate and ETA then describe that stage alone, not
        the steps of the last one divided by the time since the job began.
        """
        total = max(int(p.total), 1)
        if self.bar is None:
            self.bar = progress(total=total, desc=f"{self.desc}: {p.stage}")
            self.stage = p.stage
        elif p.stage != self.stage:
            self.bar.reset(total=total)
            self.bar.set_description(f"{self.desc}: {p.stage}")
            self.stage = p.stage
        elif self.bar.total != total:
            self.bar.total = total
        step = min(int(p.done), total) - self.bar.n
        if step:
            self.bar.update(step)

    def close(self) -> None:
        self._closing = True
        self._timer.stop()
        if not self._pushing:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        bar, self.bar = self.bar, None
        if bar is not None:
            try:
                bar.close()
            except Exception:
                log.debug("closing napari's progress bar failed", exc_info=True)


def guarded(fn, *args):
    """Run fn; return (True, result) or (False, exception): errors reach the GUI as values,
    so napari's default handler does not dump a traceback into the viewer."""
    try:
        return True, fn(*args)
    except Exception as e:
        log.debug("job %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return False, e


def guarded_gen(gen_fn, *args):
    """Like guarded for a generator job: yields its items; returns (ok, result)."""
    try:
        result = yield from gen_fn(*args)
        return True, result
    except Exception as e:
        log.debug("job %s failed", getattr(gen_fn, "__name__", gen_fn), exc_info=True)
        return False, e
