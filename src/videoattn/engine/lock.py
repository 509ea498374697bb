"""One run per work dir: an OS file lock on ``<work_dir>/train.lock``.

The lock is a POSIX record lock (``fcntl.lockf``) on an open file, so the kernel releases it when the
holder exits in any way, SIGKILL and the OOM killer included: a killed run never leaves a stale
lock. (Not ``flock``: a flock is shared with forked children, so a loader worker that outlives its
run would keep the work dir locked; a POSIX lock belongs to the process alone. Within one process,
where POSIX locks do not conflict, a set of held work dirs refuses the second run.) The file keeps the
holder's pid, host and start time, so the run that is refused can say who holds the work dir. (On a
network file system without flock support the lock is not taken and a warning says so.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError

__all__ = ["LOCK_NAME", "work_dir_lock"]

LOCK_NAME = "train.lock"
_held: set[str] = set()  # work dirs locked by this process


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"pid {info.get('pid')} on host {info.get('host')!r} since {info.get('started')}"
    except (OSError, ValueError, AttributeError):
        return "a process whose details could not be read"


@contextlib.contextmanager
def work_dir_lock(work_dir: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold the work dir's lock for the ``with`` body; raise ConfigError if another run holds it."""
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    work_dir = Path(work_dir)
    created = not work_dir.exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_NAME
    key = str(path.resolve())
    refused = ConfigError  # built lazily below, with the holder read from the file
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    owned = False
    try:
        try:
            if key in _held:
                raise BlockingIOError(errno.EAGAIN, "held by this process")
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):  # no locks on this file system
                print(f"warning: cannot lock {path} ({error.strerror}); make sure no other run uses this "
                      f"work dir", file=sys.stderr)
            else:
                raise refused(
                    f"config key 'train.work_dir': {str(work_dir)!r} is in use by another run "
                    f"({_holder(path)}); wait for it to finish or choose another train.work_dir") from None
        else:
            owned = True
            _held.add(key)
            info = {"pid": os.getpid(), "host": platform.node(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield
        except BaseException:
            if created and owned:  # a run refused before it wrote anything leaves no work dir behind
                with contextlib.suppress(OSError):
                    path.unlink()
                    work_dir.rmdir()
            raise
    finally:
        if owned:
            _held.discard(key)
        os.close(fd)  # closing the descriptor releases the lock
