"""What a training epoch shows and counts: the progress bar and the epoch's meters."""

from __future__ import annotations

import sys
from typing import Any

from .distributed import DistContext, all_reduce_sum

__all__ = ["EpochMeters", "ProgressBar"]


class ProgressBar:
    """tqdm bar on the main process (loss, lr, clips/s, ETA); silent elsewhere or when disabled."""

    def __init__(self, enabled: bool, total: int, initial: int, epoch: int, epochs: int):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            interactive = sys.stderr.isatty()
            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="step",
                            dynamic_ncols=True, leave=True, file=sys.stderr,
                            mininterval=0.2 if interactive else 10.0)

    def update(self, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EpochMeters:
    """Sums over the current epoch (loss, correct, clips, timings), saved in ``last.pt`` for a resume."""

    keys = ("loss_sum", "correct1", "clips", "seconds", "data_wait", "compute")

    def __init__(self, values: dict[str, float] | None = None):
        self.values = {key: 0.0 for key in self.keys}
        if values:
            self.values.update({key: float(values.get(key, 0.0)) for key in self.keys})

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.values[key] += value

    def reduced(self, ctx: DistContext) -> dict[str, float]:
        summed = all_reduce_sum([self.values[key] for key in self.keys], ctx).tolist()
        out = dict(zip(self.keys, summed))
        # Time is wall time, not a sum over processes.
        for key in ("seconds", "data_wait", "compute"):
            out[key] = self.values[key]
        return out
