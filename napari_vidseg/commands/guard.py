"""RunGuard: what keeps a headless run from losing the user's work (issue 31).

    plan = OutputPlan.check(video, out, session=None, files=[sticker, composite, labels])  # before any work
    with RunGuard(plan, command="napari-vidseg segment ...", overwrite=False, name="segment") as guard:
        session = ...create or re-open in plan.session...
        guard.attach(session, n_objects)      # output folder ownership, free space
        ...clicks, propagation, export...
    return guard.exit_code                    # 0, or 130 / 143 after Ctrl-C / SIGTERM

Entering: the first line printed names the session folder; the output and session folders
(and each output file's folder) are made and test-written; the output folder is locked.
Leaving: Ctrl-C or SIGTERM print one line with where the work is and the command that
resumes it (exit 130 / 143); an OSError becomes an InputError of one line naming the path
and what was kept; locks are released, the session closed, and folders this run made but
never wrote into are removed. Kept apart from segment's option parsing so that any runner of
a headless job (segment, a job file) can wrap its work the same way.
"""
from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..io import outputs as oc
from ..types import InputError


def default_session(out: Path) -> Path:
    """Where a run without --session keeps its work: OUT.session beside the output folder."""
    out = Path(out)
    return out.with_name(out.name + ".session")


@dataclass
class OutputPlan:
    """The checked output paths of one run."""
    out: Path
    session: Path
    files: list  # output files (Path or None): sticker, composite, labels

    @classmethod
    def check(cls, video, out, session=None, files=(), flags=("--sticker", "--composite", "--labels")) -> "OutputPlan":
        """Every output path checked before any work: not the input, not inside an input folder,
        a folder where a folder goes and a file where a file goes."""
        out = Path(out).expanduser()
        folder = Path(session).expanduser() if session else default_session(out)
        oc.check_not_input(video, out, "--out", folder=True)
        oc.check_not_input(video, folder, "--session" if session else "the session folder", folder=True)
        a, b = out.absolute(), folder.absolute()
        if a == b or a in b.parents or b in a.parents:
            raise InputError(f"--out {out} and the session folder {folder} must be separate folders")
        checked = []
        for flag, p in zip(flags, files):
            oc.check_not_input(video, p, flag, folder=False)
            checked.append(None if p is None else Path(p).expanduser())
        return cls(out, folder, checked)


def estimate_bytes(T: int, H: int, W: int, n_objects: int, labels: Path | None) -> tuple[int, int]:
    """(session, outputs) bytes a run writes, roughly: a mask PNG is at most about a bit a pixel
    plus headers; a label volume is 2 bytes a pixel (.npy, uncompressed). Stickers and
    composites are not counted (their size depends on the content)."""
    session = T * n_objects * (H * W // 8 + 2048)
    outputs = T * (H * W + 2048) // 4  # 8-bit grey PNGs of a mask compress to well under 1/4
    if labels is not None:
        outputs += T * H * W * 2
    return session, outputs


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def kept(session) -> str:
    """What a session holds, in words: "N mask(s) of T frame(s)"."""
    n = sum(len(session.masks.frames(o)) for o in session.objects)
    return f"{n} mask(s) of {int(session.source.n_frames)} frame(s)"


class RunGuard:
    def __init__(self, plan: OutputPlan, command: str, overwrite: bool = False, name: str = "segment"):
        self.plan, self.command, self.overwrite, self.name = plan, command, overwrite, name
        self.session = None
        self.exit_code = 0
        self._out_lock = None
        self._previous = None
        self._made: list[Path] = []

    def __enter__(self) -> "RunGuard":
        from ..io.folder_lock import FolderLock

        plan = self.plan
        # The first line: where the work goes (printed also when quiet: it is what a user needs after a crash).
        print(f"session: {plan.session.absolute()} (the work is kept there; the same command resumes it)",
              flush=True)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _on_sigterm)
        self._made = [p for p in (plan.out, plan.session) if not p.exists()]
        try:
            for p in plan.files:
                if p is not None:
                    oc.check_writable(p.parent)
            oc.check_writable(plan.session)
            oc.check_writable(plan.out)
            self._out_lock = FolderLock.acquire(plan.out / oc.OUTPUT_LOCK, what="the output folder",
                                                 takeover=False)
        except BaseException:
            self._cleanup()
            raise
        return self

    def attach(self, session, n_objects: int) -> None:
        """The run's session is open: check the output folder is its own (or --overwrite) and
        that the disk has room, then mark the output folder as this session's."""
        self.session = session
        plan = self.plan
        owned = str(plan.out.resolve()) in session.outputs()
        oc.check_output_folder(plan.out, owned, self.overwrite)
        src = session.source
        need_session, need_out = estimate_bytes(int(src.n_frames), int(src.height), int(src.width),
                                                max(n_objects, 1), plan.files[2] if len(plan.files) > 2 else None)
        oc.check_space({plan.session: need_session, plan.out: need_out})
        session.add_output(plan.out)

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            where = self.plan.session.absolute()
            held = "" if self.session is None else f" ({kept(self.session)})"
            if isinstance(exc, KeyboardInterrupt):
                what = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
                print(f"napari-vidseg {self.name}: {what}; the work so far is in {where}{held}; "
                      f"resume with: {self.command}", file=sys.stderr, flush=True)
                self.exit_code = 143 if isinstance(exc, _Terminated) else 130
                return True
            if isinstance(exc, OSError):
                raise InputError(f"{oc.describe_os_error(exc)}; the work so far is kept in the session {where}{held}; "
                                 f"after fixing it, resume with: {self.command}") from None
            return False
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        if self.session is not None:
            self.session.close()
        if self._out_lock is not None:
            self._out_lock.release()
            self._out_lock = None
        for p in self._made:  # made by this run and never written into
            try:
                if p.is_dir() and not any(p.iterdir()):
                    p.rmdir()
            except OSError:
                pass
