"""What ``last.pt`` and ``best.pt`` hold, assembled in one place, and the run position read back.

``last.pt`` is everything an exact resume needs (see :mod:`videoattn.engine.trainer`): model,
optimizer, scaler, position, sampler, RNG states, the partial epoch's meters, totals, history, best
result and skipped samples, plus the config and classes. ``best.pt`` is the model of the best
validated epoch with its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..version import __version__
from .checkpoint import capture_rng_state

__all__ = ["RunPosition", "best_state", "check_world_size", "last_state", "read_position"]


@dataclass
class RunPosition:
    """Where a run is: epochs done, optimizer steps into the current epoch, optimizer steps in all."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def last_state(*, model_state: dict, optimizer: Any, scaler: Any, schedule: Any, config: Config,
               position: RunPosition, micro_batch: int, sampler_seed: int, world_size: int,
               meters: dict[str, float], totals: dict[str, float], history: list[dict],
               best_top1: float | None, best_epoch: int | None, skipped: list[dict], num_classes: int,
               classes: list[str]) -> dict[str, Any]:
    """The ``last.pt`` dict (RNG states captured now)."""
    t = config.train
    return {
        "model": model_state,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scheduler": schedule.state_dict(),
        "position": {"epoch": position.epoch, "step_in_epoch": position.step_in_epoch,
                     "global_step": position.global_step, "global_batch": t.batch_size,
                     "samples_into_epoch": position.step_in_epoch * t.batch_size},
        # Global, not per rank: a position in the epoch's order of all processes together, so the
        # run resumes on any number of processes the global batch divides among.
        "sampler": {"seed": sampler_seed, "epoch": position.epoch,
                    "samples_into_epoch": position.step_in_epoch * t.batch_size,
                    "num_replicas": world_size, "micro_batch": micro_batch},
        "rng": capture_rng_state(),
        "meters": meters,
        "totals": totals,
        "history": history,
        "best": {"top1": best_top1, "epoch": best_epoch},
        "skipped": skipped,
        "config": config.to_dict(),
        "num_classes": num_classes,
        "classes": classes,
        "videoattn_version": __version__,
    }


def best_state(*, model_state: dict, config: Config, num_classes: int, classes: list[str], epoch: int,
               global_step: int, record: dict[str, Any]) -> dict[str, Any]:
    """The ``best.pt`` dict: the model and the validation metrics of its epoch."""
    return {"model": model_state, "config": config.to_dict(), "num_classes": num_classes, "classes": classes,
            "epoch": epoch, "global_step": global_step,
            "metrics": {k: v for k, v in record.items() if k.startswith("val_")},
            "videoattn_version": __version__}


def read_position(state: dict[str, Any], batch_size: int) -> RunPosition:
    """The position saved in ``last.pt``; refuse a resume with another global batch size."""
    position = state["position"]
    saved_global_batch = int(position.get("global_batch", batch_size))
    if saved_global_batch != batch_size:
        raise ConfigError(f"config key 'train.batch_size': got {batch_size} but the run being resumed "
                          f"used {saved_global_batch}; exact resume needs the same batch")
    return RunPosition(epoch=int(position["epoch"]), step_in_epoch=int(position["step_in_epoch"]),
                       global_step=int(position["global_step"]))


def check_world_size(batch_size: int, accumulation_steps: int, world_size: int,
                     state: dict[str, Any] | None = None) -> int:
    """The per-process micro-batch; a ConfigError in one line when the global batch does not divide
    among ``world_size`` processes x ``accumulation_steps`` (naming the resumed run's process count)."""
    per_step = world_size * accumulation_steps
    if batch_size % per_step == 0:
        return batch_size // per_step
    resumed = ""
    if state is not None:
        saved = (state.get("sampler") or {}).get("num_replicas")
        resumed = (f" (the run being resumed was checkpointed on {saved} process(es); it resumes on any "
                   f"number of processes that {batch_size} // {accumulation_steps} accumulation step(s) "
                   f"divides by)" if saved else "")
    raise ConfigError(f"config key 'train.batch_size': got {batch_size}; it must divide evenly into "
                      f"{world_size} process(es) x {accumulation_steps} accumulation step(s){resumed}")
