"""One writer per folder: a lock file that names its holder.

    lock = FolderLock.acquire(folder / "session.lock", what="the session folder")
    ...
    lock.check()      # before a write: raises InputError if another opener took over
    lock.release()

Across processes the lock is an exclusive `flock` on the lock file (POSIX): the
kernel drops it when the holder dies, however it dies, so a stale lock file from a
killed process is simply taken over. The file holds the holder's pid so that the
error names it. Where `fcntl` is missing (Windows) the file is created exclusively
and a lock whose pid is no longer running is recovered.

Within one process, opening a folder again hands it to the newer opener and the
older object becomes read-only (its next write raises): a GUI that re-opens a
session while the old object is still referenced somewhere keeps working, and the
two can never interleave their writes.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import weakref
from pathlib import Path

from ..types import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_registry_lock = threading.Lock()
#: lock path -> (open fd holding the flock, the FolderLock that may write now)
_held: dict[str, tuple[int | None, "weakref.ref[FolderLock]"]] = {}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    pid = info.get("pid")
    host = info.get("host")
    since = info.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"process {pid}{where}{when}" if pid else "another process"


class FolderLock:
    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what
        self._released = False

    @classmethod
    def acquire(cls, path, what: str = "the folder", takeover: bool = True) -> "FolderLock":
        """Take the lock. Held by another process: InputError naming it. Held in this process:
        the newer object takes over (takeover=True), or InputError (takeover=False: for a
        holder that does not check before each write)."""
        path = Path(path).absolute()
        key = str(path)
        lock = cls(path, what)
        with _registry_lock:
            held = _held.get(key)
            if held is not None and not takeover and held[1]() is not None:
                raise InputError(f"{what} {path.parent} is in use by another job of this process: one writer "
                                 f"at a time")
            if held is not None:
                # This process holds it already: the newer opener takes over.
                _held[key] = (held[0], weakref.ref(lock))
            else:
                _held[key] = (_lock_file(path, what), weakref.ref(lock))
        # Forgotten without release(): the lock goes when its last holder object does.
        weakref.finalize(lock, _release_key, key)
        return lock

    def check(self) -> None:
        """Raise InputError unless this object is the folder's writer."""
        with _registry_lock:
            held = _held.get(str(self.path))
            current = held[1]() if held else None
        if current is not self or self._released:
            raise InputError(f"{self.what} {self.path.parent} was opened again (or closed) since this object "
                             f"opened it; only the newest opener may write, use that one")

    @property
    def active(self) -> bool:
        try:
            self.check()
        except InputError:
            return False
        return True

    def release(self) -> None:
        self._released = True
        _release_key(str(self.path), only=self)


def _release_key(key: str, only: FolderLock | None = None) -> None:
    """Let the lock go: when `only` holds it, or (only=None, from a finalizer) when its holder is gone."""
    with _registry_lock:
        held = _held.get(key)
        if held is None:
            return
        current = held[1]()
        if current is not only:
            return  # a newer opener holds it (or, from a finalizer, the holder still lives)
        del _held[key]
        fd = held[0]
    path = Path(key)
    try:
        if fd is not None:
            path.unlink(missing_ok=True)  # while still locked: nobody can be between open and flock on it
            os.close(fd)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _lock_file(path: Path, what: str) -> int | None:
    """Take the lock file; returns the fd that holds the flock (None: a pid file alone)."""
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    try:
        fd = _flock(path, what) if fcntl is not None else None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.write(fd, info)
            return fd
        _pid_file(path, what, info)
        return None
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"cannot write in {path.parent}: {e.strerror or e}") from None


def _in_use(path: Path, what: str, holder: dict, hint: str = "") -> InputError:
    return InputError(f"{what} {path.parent} is in use by {_describe(holder)}: one writer at a time; "
                      f"close it there first{hint}")


def _flock(path: Path, what: str) -> int | None:
    """An fd holding an exclusive flock on `path`; None where the file system has no flock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _in_use(path, what, _holder(path), f" (lock file {path})") from None
            return None  # e.g. ENOLCK on some network mounts: fall back to the pid file
        # The holder before us may have unlinked the file between our open and flock:
        # then we locked an orphan inode; start again on the path's current file.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _pid_file(path: Path, what: str, info: bytes) -> None:
    """Create `path` exclusively; a file left by a process that no longer runs is taken over."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            pid = int(holder.get("pid") or 0)
            if holder.get("host") in (None, socket.gethostname()) and not pid_alive(pid):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise _in_use(path, what, holder, f" (or delete {path} if that process is gone)") from None
        os.write(fd, info)
        os.close(fd)
        return
    raise InputError(f"cannot take the lock {path}")
