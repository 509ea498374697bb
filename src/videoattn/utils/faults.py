"""Deterministic fault injection for the reliability tests: a process kills itself at a named point.

``VIDEOATTN_FAULT=<point>:<n>`` makes the process that reaches ``fault_point(<point>)`` for the
``n``-th time (1-based, counted per process) send itself SIGKILL there, exactly as the OOM killer or
a preempting scheduler would. Without the variable :func:`fault_point` costs one dictionary lookup.

Points: ``step`` (after the n-th optimizer step, before anything records it), ``checkpoint_write``
(a checkpoint's bytes are in its temporary file, not yet renamed into place), ``evaluation``
(validation scores computed, not yet recorded), ``synthetic_video`` (the n-th synthetic video of a
dataset generation written). Used by ``tests/reliability``; see ``docs/reliability.md``.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "fault_point"]

ENV = "VIDEOATTN_FAULT"
_counts: dict[str, int] = {}


def fault_point(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
