"""Atomic file writes: a killed process never leaves a half-written file that a later run trusts.

Everything videoattn writes that another run may read back (checkpoints, metrics, reports, caches)
goes through :func:`atomic_write`: the content is written to a temporary file in the same folder,
flushed and fsync'ed, then renamed over the destination in one step (``os.replace``).
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _umask() -> int:
    mask = os.umask(0)
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
