"""Training and evaluation engine: ``train(config) -> TrainResult`` and ``evaluate(config, checkpoints)``.

Submodules: ``trainer`` (set-up and the loop), ``train_state`` (what ``last.pt``/``best.pt`` hold),
``process`` (threads, determinism, seeds, work-dir guard), ``progress`` (progress bar, epoch meters),
``run_files`` (``config.yaml``, ``metadata.json``), ``preflight`` (are the annotated media there?),
``builders`` (datasets, loaders, models, frozen BN), ``evaluation`` (multi-view testing, ensembles),
``checkpoint`` (atomic saves, safe loads, RNG state), ``sampler`` (resumable distributed order),
``schedules`` (learning rates), ``metrics``, ``distributed`` (torchrun set-up), ``runlog`` (JSONL + TensorBoard),
``commands`` (``videoattn train`` / ``videoattn test``). Imports are lazy so ``import videoattn.engine``
does not pull in torch until something is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainResult", "TrainingDivergedError", "evaluate", "load_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult", "TrainingDivergedError"):
        from . import trainer

        return getattr(trainer, name)
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    if name == "load_checkpoint":
        from .checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'videoattn.engine' has no attribute {name!r}")
