"""Checkpoints: atomic saves, safe loads, and the random-number state needed for exact resume.

A checkpoint is a plain dict saved with ``torch.save`` through
:func:`videoattn.utils.io.atomic_torch_save` (temporary file + ``os.replace``), so a process killed at
any moment leaves either the previous complete file or the new complete file, never a torn one.
Its ``"model"`` entry is the model's state dict (the unwrapped module, no ``module.`` prefix); a
training checkpoint also holds optimizer, scaler, position (epoch, step in epoch, global step),
RNG states, history and the resolved config.

Everything in it is made of tensors, numbers, strings, lists, tuples and dicts, so loading uses
``torch.load(weights_only=True)``: a file holding arbitrary pickled objects (which could run code)
is refused with :class:`~videoattn.errors.CheckpointError`.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..utils.io import atomic_torch_save

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "load_model_weights",
    "restore_rng_state",
    "save_checkpoint",
    "unwrap_model",
]

CHECKPOINT_FORMAT = "videoattn-checkpoint-v1"


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Atomically write ``state`` (must contain ``"model"``) to ``path``."""
    if "model" not in state:
        raise ValueError("a checkpoint needs a 'model' entry holding the state dict")
    state = {"format": CHECKPOINT_FORMAT, **state}
    atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise CheckpointError if unsafe, torn or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        detail = f"it holds {found.group(1)}" if found else "weights_only unpickler refused it"
        raise CheckpointError(
            f"checkpoint {str(path)!r} was refused: it contains pickled objects other than tensors and "
            f"plain containers, which could run code when loaded ({detail}). Re-save only the "
            f"state dict (torch.save({{'model': model.state_dict()}}, ...)) from a trusted source."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read (truncated or not a torch file?): "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if isinstance(state, dict) and "model" not in state and state and all(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = {"model": state}  # a bare state dict
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} has no 'model' entry; expected a dict saved by "
                              f"videoattn or a bare state dict")
    if isinstance(state["model"], dict):
        model_state = state["model"]
        if model_state and all(key.startswith("module.") for key in model_state):
            state["model"] = {key[len("module."):]: value for key, value in model_state.items()}
    return state


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], source: str = "checkpoint") -> None:
    """Load ``state["model"]`` into ``model`` strictly, explaining any mismatch in one message."""
    target = unwrap_model(model)
    own = target.state_dict()
    incoming = state["model"]
    missing = [key for key in own if key not in incoming]
    unexpected = [key for key in incoming if key not in own]
    wrong_shape = [f"{key}: {tuple(incoming[key].shape)} vs model {tuple(own[key].shape)}"
                   for key in own if key in incoming and tuple(incoming[key].shape) != tuple(own[key].shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} with other shapes (e.g. {'; '.join(wrong_shape[:3])})")
        raise CheckpointError(f"{source} does not fit the model: " + ", ".join(parts)
                              + ". Check model.name, model.num_classes, model.num_frames and model.options.")
    target.load_state_dict(incoming, strict=True)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as weights_only-loadable data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
