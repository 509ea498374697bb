"""Preemption: SIGTERM / SIGUSR1 stop training at the next optimizer-step boundary, resumably.

Schedulers ask a job to leave with a signal and a grace period (SLURM: ``--signal=USR1@120`` before
the time limit, SIGTERM on preemption or ``scancel``; Kubernetes: SIGTERM). While
:func:`preemption_handlers` is active, the first SIGTERM or SIGUSR1 only sets a flag. The trainer
all-reduces the flag with the step's other flags, so every rank learns of it at the same step and
stops at that step boundary; rank 0 writes ``last.pt`` (atomically, as every checkpoint) and every
process exits with :data:`PREEMPTED_EXIT_CODE` (75, ``EX_TEMPFAIL`` of ``sysexits.h``: "try again
later"), which a job script can requeue on.

A second signal, arriving more than :data:`REPEAT_WINDOW_S` seconds after the first, exits at once
with ``128 + signal number`` (143 for SIGTERM, 138 for SIGUSR1), as the default action would; the
last good checkpoint is not touched (a checkpoint being written at that instant stays a temporary
file and ``last.pt`` the previous one). A repeat inside the window is the same request delivered
twice: under SLURM every process of a job step receives the signal, and torchrun's agent (started
with ``--signals-to-handle ...,SIGUSR1``) forwards what it receives to its workers as well.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["PREEMPTED_EXIT_CODE", "PREEMPT_SIGNALS", "REPEAT_WINDOW_S", "Preempted", "PreemptionFlag",
           "preemption_handlers"]

#: Exit code of a process that stopped at a step boundary after SIGTERM/SIGUSR1 and saved ``last.pt``.
PREEMPTED_EXIT_CODE = 75
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: A repeated signal within this many seconds of the first counts as the same request.
REPEAT_WINDOW_S = 2.0


class Preempted(Exception):  # noqa: N818 - not an error: the run stopped on request, resumably
    """Training stopped at a step boundary because of a signal; ``last.pt`` holds that boundary."""

    exit_code = PREEMPTED_EXIT_CODE


class PreemptionFlag:
    """The signal received (if any), set from the signal handler and read at step boundaries."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.received_at = 0.0

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "none"

    def handle(self, signum: int, frame: object = None) -> None:
        now = time.monotonic()
        if self.signal is None:
            self.signal, self.received_at = signum, now
            message = (f"videoattn: got {signal.Signals(signum).name}: stopping at the next step boundary "
                       f"with a checkpoint (exit code {PREEMPTED_EXIT_CODE}); send it again to exit at once\n")
            with contextlib.suppress(OSError):
                os.write(sys.stderr.fileno(), message.encode())
            return
        if now - self.received_at <= REPEAT_WINDOW_S:
            return
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), f"videoattn: got {signal.Signals(signum).name} again: exiting now; "
                     f"last.pt is the last good checkpoint\n".encode())
        os._exit(128 + signum)


@contextlib.contextmanager
def preemption_handlers(enabled: bool = True) -> Iterator[PreemptionFlag]:
    """Install the SIGTERM/SIGUSR1 handlers for the duration of a run (main thread only; elsewhere, or
    with ``enabled=False``, the flag simply never gets set) and restore the previous ones after."""
    flag = PreemptionFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.handle) for sig in PREEMPT_SIGNALS}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
