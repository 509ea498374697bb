"""Atomic file writes: a killed process never leaves a half-written file that a later run trusts.

Everything videoattn writes that another run may read back (checkpoints, metrics, reports, caches)
goes through :func:`atomic_write`: the content is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the destination in one step (``os.replace``). Writers that
take a file name (exporters) use :func:`atomic_path` instead. Either way the file ends with the
permissions of any new file under the process's umask (0644 under the usual 022), not the 0600 of
the temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a file name (exporters, savers): on
    success it gets the permissions of any new file (``0666`` less the umask, e.g. ``0644``) and is
    renamed to ``path``; on error it is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600; a writer may also have replaced the file: set the usual permissions last
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux), since setting
    it to read it back leaves a moment in which files other threads create get the wrong mode."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=indent, sort_keys=False)
        handle.write("\n")


def update_json_section(path: str | os.PathLike, section: str, value: Any) -> None:
    """Set ``section`` of the JSON object in ``path`` (created if missing) to ``value``, atomically:
    the benchmarks that share one results file each own a section of it."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = value
    atomic_write_json(path, data, indent=1)
