"""What the training loop does when a step goes wrong: a NaN/Inf loss, a loader worker that died.

* :class:`NonFiniteGuard` decides, for a step whose loss is not finite, whether it may be skipped
  (``train.skip_nonfinite_steps``: no optimizer update, gradients dropped, the scaler untouched) or
  the run must stop. Its count is kept in ``last.pt``'s totals, so the budget spans resumes.
* :func:`worker_death` recognises the error PyTorch's DataLoader raises when a worker process
  dies (the OOM killer's SIGKILL, a segfault in a decoder), and :func:`batch_description` names the
  videos of the batch the loop was waiting for, so the message says which data was being built.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import DataError

__all__ = ["LoaderWorkerDiedError", "NonFiniteGuard", "batch_description", "worker_death"]


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
