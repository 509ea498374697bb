"""Deterministic fault injection for the reliability tests: a process kills itself at a named point.

``VIDEOATTN_FAULT=<point>:<n>`` makes the process that reaches ``fault_point(<point>)`` for the
``n``-th time (1-based, counted per process) send itself SIGKILL there, exactly as the OOM killer or
a preempting scheduler would. Instead of SIGKILL, ``<point>:<n>:stall=<seconds>`` sleeps there (a
step that hangs) and ``<point>:<n>:signal=SIGUSR1`` sends that signal (a preemption at a known step).
Without the variable :func:`fault_point` costs one dictionary lookup.

Under torchrun two more rules keep a fault to one process and one attempt: ``VIDEOATTN_FAULT_RANK=<r>``
limits it to the process whose ``RANK`` is ``r``, and a fault never fires in a restarted worker group
(``TORCHELASTIC_RESTART_COUNT`` > 0), so ``torchrun --max-restarts 1`` restarts once and then runs clean.
``VIDEOATTN_FAULT_ONCE=<path>`` makes the fault fire at most once in all (the process that creates that
marker file fires): torchrun agents count restarts each on their own, and ranks may be reassigned.

Points: ``step`` (after the n-th optimizer step, before anything records it), ``checkpoint_write``
(a checkpoint's bytes are in its temporary file, not yet renamed into place), ``evaluation``
(validation scores computed, not yet recorded), ``synthetic_video`` (the n-th synthetic video of a
dataset generation written). Used by ``tests/reliability``; see ``docs/reliability.md``.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["ENV", "ONCE_ENV", "RANK_ENV", "fault_point"]

ENV = "VIDEOATTN_FAULT"
RANK_ENV = "VIDEOATTN_FAULT_RANK"
ONCE_ENV = "VIDEOATTN_FAULT_ONCE"
_counts: dict[str, int] = {}


def fault_point(point: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0:
        return
    rank = os.environ.get(RANK_ENV)
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    count, _, action = rest.partition(":")
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != int(count or 1):
        return
    once = os.environ.get(ONCE_ENV)
    if once:  # fire at most once across processes and restarts: the first to create the marker fires
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if action.startswith("stall="):
        time.sleep(float(action.partition("=")[2]))
    elif action.startswith("signal="):
        os.kill(os.getpid(), getattr(signal, action.partition("=")[2]))
    else:
        os.kill(os.getpid(), signal.SIGKILL)
