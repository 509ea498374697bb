"""Learning-rate schedules as pure functions of the optimizer step.

The learning rate of step ``s`` depends only on ``s`` (and the recipe), never on the history of calls,
so a resumed run recomputes exactly the rate an uninterrupted run would use. Epoch-valued settings
(warm-up length, milestones, SGDR periods) are converted with ``steps_per_epoch``; the schedule is
evaluated per step, so warm-up rises smoothly within an epoch and milestones fall at epoch starts.

Recipes encoded here:

* linear warm-up (Goyal et al. 2017, "Accurate, large minibatch SGD", sec. 2.2): from
  ``lr * warmup_start_factor`` to ``lr`` over ``warmup_epochs`` (GTA appendix: 2 epochs; BAT 4.1).
* ``step``: ``lr * gamma**k`` after the k-th milestone (GTA: x0.1 at 30/40/45 of 50 epochs; RNL sec.
  IV: x0.1 every 20 epochs).
* ``cosine``: half-cosine from ``lr`` to ``min_lr`` between the end of warm-up and the last epoch
  (BAT sec. 4.1, Mini-Kinetics).
* ``warm_restarts``: SGDR (Loshchilov & Hutter 2017, eq. 5): cosine from ``lr`` to ``min_lr`` over a
  cycle of ``restart_period`` epochs, then a restart with the cycle ``restart_mult`` times longer
  (SA-GSM sec. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LRSchedule"]


@dataclass(frozen=True)
class LRSchedule:
    base_lr: float
    steps_per_epoch: int
    epochs: int
    schedule: str = "step"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    min_lr: float = 0.0
    restart_period: float = 10.0
    restart_mult: float = 1.0

    @classmethod
    def from_config(cls, train_config: Any, steps_per_epoch: int) -> LRSchedule:
        t = train_config
        return cls(base_lr=t.lr, steps_per_epoch=steps_per_epoch, epochs=t.epochs, schedule=t.schedule,
                   milestones=tuple(t.milestones), gamma=t.gamma, warmup_epochs=t.warmup_epochs,
                   warmup_start_factor=t.warmup_start_factor, min_lr=t.min_lr,
                   restart_period=t.restart_period, restart_mult=t.restart_mult)

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.schedule not in ("step", "cosine", "warm_restarts", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        """Learning rate used by optimizer step ``step`` (0-based)."""
        epoch = step / self.steps_per_epoch  # fractional epoch at the start of this step
        warmup_steps = round(self.warmup_epochs * self.steps_per_epoch)
        if step < warmup_steps:
            # Linear from start_factor at step 0 to 1 at step == warmup_steps.
            factor = self.warmup_start_factor + (1 - self.warmup_start_factor) * step / warmup_steps
            return self.base_lr * factor * self._decay(epoch, step, warmup_steps)
        return self.base_lr * self._decay(epoch, step, warmup_steps)

    def _decay(self, epoch: float, step: int, warmup_steps: int) -> float:
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            passed = sum(1 for milestone in self.milestones if epoch >= milestone - 1e-9)
            return self.gamma ** passed
        min_factor = self.min_lr / self.base_lr
        if self.schedule == "cosine":
            span = max(self.total_steps - warmup_steps, 1)
            progress = min(max(step - warmup_steps, 0) / span, 1.0)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        # warm_restarts (SGDR): find the cycle containing `epoch` (measured after warm-up).
        t = max(epoch - self.warmup_epochs, 0.0)
        period = self.restart_period
        while t >= period - 1e-12:
            t -= period
            period *= self.restart_mult
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t / period))

    def state_dict(self) -> dict[str, Any]:
        """Plain data (saved in checkpoints for the record; the rate itself is recomputed from the step)."""
        return {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in self.__dict__.items()}
