"""What the training loop does when a step goes wrong: a NaN/Inf loss, a loader worker that died.

* :class:`NonFiniteGuard` decides, for a step whose loss is not finite, whether it may be skipped
  (``train.skip_nonfinite_steps``: no optimizer update, gradients dropped, the scaler untouched) or
  the run must stop. Its count is kept in ``last.pt``'s totals, so the budget spans resumes.
* :func:`worker_death` recognises the error PyTorch's DataLoader raises when a worker process
  dies (the OOM killer's SIGKILL, a segfault in a decoder), and :func:`batch_description` names the
  videos of the batch the loop was waiting for, so the message says which data was being built.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time
from typing import Any

from ..errors import DataError

__all__ = ["LoaderWorkerDiedError", "NonFiniteGuard", "StepBoundaryBatches", "batch_description",
           "dead_worker_report", "worker_death"]


class LoaderWorkerDiedError(DataError):
    """A data loader worker process died; the run stopped with a resumable ``last.pt``."""


def worker_death(error: BaseException) -> bool:
    """True if ``error`` is the DataLoader's report of a worker that exited or was killed."""
    text = str(error)
    return isinstance(error, RuntimeError) and "DataLoader worker" in text and (
        "killed" in text or "exited unexpectedly" in text)


def batch_description(dataset: Any, sampler: Any, start: int, size: int, limit: int = 4) -> str:
    """``indices [..] (path, ...)`` of the ``size`` samples from this epoch's position ``start``."""
    indices = sampler.epoch_indices()[start:start + size]
    records = getattr(dataset, "records", None)
    paths = [str(getattr(records[i], "path", i)) for i in indices[:limit]] if records is not None else []
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return f"indices {indices}" + (f" ({', '.join(paths)}{more})" if paths else "")


def dead_worker_batches(iterator: Any, error: BaseException) -> list[int]:
    """Numbers (from this iterator's start) of the batches that the dead worker(s) named in ``error``
    had been given and the main process had not received, earliest first. The worker died building
    one of them (usually the first; with prefetching, the first may be finished and still queued).

    Reads the multiprocessing iterator's bookkeeping (``_workers``, ``_task_info``); returns [] if
    that is unavailable (another PyTorch version), and the caller then names the awaited batch.
    """
    iterator = _torch_iterator(iterator)
    with contextlib.suppress(Exception):
        found = re.search(r"pid(?:\(s\))? ([\d, ]+)", str(error))
        pids = {int(p) for p in re.findall(r"\d+", found.group(1))} if found else set()
        dead = {i for i, worker in enumerate(iterator._workers) if worker.pid in pids}
        return sorted(idx for idx, info in iterator._task_info.items() if len(info) == 1 and info[0] in dead)
    return []


def dead_worker_report(error: BaseException, iterator: Any, dataset: Any, sampler: Any, waited_start: int,
                       batch_size: int) -> str:
    """Which data the dead worker was building (see :func:`dead_worker_batches`), or, when the
    loader's bookkeeping is unavailable, the batch the loop was waiting for (from ``waited_start``)."""
    building = dead_worker_batches(iterator, error)
    if building:  # batch numbers count from the sampler's start point of this epoch
        held = "; ".join(batch_description(dataset, sampler, sampler.start + b * batch_size, batch_size)
                         for b in building[:2])
        return f"it died building one of the batches it had not delivered: {held}"
    return "the batch being waited for holds " + batch_description(dataset, sampler, waited_start, batch_size)


def _torch_iterator(iterator: Any) -> Any:
    """The DataLoader's own iterator inside wrappers (``videoattn.data.loader`` keeps it as ``inner``)."""
    while hasattr(iterator, "inner"):
        iterator = iterator.inner
    return iterator


class StepBoundaryBatches:
    """The loader's iterator, arranged so that a dead worker is reported only while waiting for data.

    PyTorch reports a dead worker from its SIGCHLD handler, i.e. wherever the main thread happens to
    be: in the middle of backward or of the optimizer's in-place update, which would leave
    half-updated weights behind. While this object is open, the loader's handler is swapped for one
    that only notes the signal, and put back (and run, if a signal came) inside ``next()``: the
    report then arrives where the weights are those of a step boundary (gradients may be partly
    accumulated; the caller drops them). Without workers or off the main thread it is a plain
    iterator.
    """

    def __init__(self, iterator: Any, active: bool):
        self.iterator = iterator
        self.active = (active and hasattr(signal, "SIGCHLD")
                       and threading.current_thread() is threading.main_thread())
        self.pending = False
        self.died = False
        if self.active:
            self.loader_handler = signal.getsignal(signal.SIGCHLD)
            signal.signal(signal.SIGCHLD, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.pending = True

    def _report(self) -> None:
        """Put the loader's handler back and run it for a signal noted meanwhile (it raises if a
        worker died)."""
        signal.signal(signal.SIGCHLD, self.loader_handler)
        if self.pending:
            self.pending = False
            if callable(self.loader_handler):
                self.loader_handler(signal.SIGCHLD, None)

    def __iter__(self) -> StepBoundaryBatches:
        return self

    def __next__(self) -> Any:
        if not self.active:
            return next(self.iterator)
        try:
            self._report()
            return next(self.iterator)
        except RuntimeError as error:
            self.died = worker_death(error)
            raise
        except (EOFError, ConnectionError) as error:  # a worker died while handing its batch over
            workers = getattr(_torch_iterator(self.iterator), "_workers", [])
            dead = []
            for _ in range(20):  # the kernel may not have reaped it yet
                dead = [w.pid for w in workers if not w.is_alive()]
                if dead or not workers:
                    break
                time.sleep(0.05)
            self.died = True
            raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(map(str, dead)) or 'unknown'}) exited "
                               f"unexpectedly ({type(error).__name__} while receiving a batch)") from None
        finally:
            signal.signal(signal.SIGCHLD, self._note)

    def close(self) -> None:
        """Put the loader's handler back. A death noted now is left to the loader's own liveness
        check at the next ``next()`` (the step in progress completed normally). After a death the
        iterator's workers are shut down: otherwise its handler reports the dead worker again at
        every later SIGCHLD, anywhere in the process."""
        if self.died:
            shutdown = getattr(_torch_iterator(self.iterator), "_shutdown_workers", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()
        if self.active:
            self.active = False
            try:
                self._report()
            except RuntimeError as error:
                if not worker_death(error):
                    raise


class NonFiniteGuard:
    """Counts skipped non-finite steps against ``limit`` (stored in the run's ``totals``)."""

    KEY = "nonfinite_steps_skipped"

    def __init__(self, limit: int, totals: dict[str, float]):
        self.limit = int(limit)
        self.totals = totals
        totals.setdefault(self.KEY, 0.0)

    @property
    def skipped(self) -> int:
        return int(self.totals.get(self.KEY, 0))

    def may_skip(self) -> bool:
        """Count one more bad step; True if it is within the budget (then skip it), False to stop."""
        if self.skipped >= self.limit:
            return False
        self.totals[self.KEY] = self.skipped + 1.0
        return True

    def report(self, loss: float, epoch: int, step: int, show: bool) -> dict[str, Any]:
        record = {"epoch": epoch, "loss": str(loss), "skipped": self.skipped, "allowed": self.limit}
        if show:
            print(f"warning: loss {loss} at epoch {epoch}, optimizer step {step}: step skipped "
                  f"({self.skipped} of train.skip_nonfinite_steps={self.limit})", file=sys.stderr)
        return record
