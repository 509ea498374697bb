"""Checkpoints: atomic saves, safe loads, and the random-number state needed for exact resume.

A checkpoint is a plain dict saved with ``torch.save`` through
:func:`videoattn.utils.io.atomic_write` (temporary file + ``os.replace``), so a process killed at
any moment leaves either the previous complete file or the new complete file, never a torn one.
Its ``"model"`` entry is the model's state dict (the unwrapped module, no ``module.`` prefix); a
training checkpoint also holds optimizer, scaler, position (epoch, step in epoch, global step),
RNG states, history and the resolved config.

Everything in it is made of tensors, numbers, strings, lists, tuples and dicts, so loading uses
``torch.load(weights_only=True)``: a file holding arbitrary pickled objects (which could run code)
is refused with :class:`~videoattn.errors.CheckpointError`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import shutil
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..utils.faults import fault_point
from ..utils.io import atomic_write

__all__ = [
    "capture_rng_state",
    "load_checkpoint",
    "load_model_weights",
    "load_resume_checkpoint",
    "previous_path",
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


def state_checksum(state: Any) -> int:
    """CRC-32 of everything in a checkpoint (tensors' dtype, shape and bytes; keys; plain values).

    Saved under ``"checksum"`` and checked by :func:`load_checkpoint`: a file whose bytes changed
    after it was written (a torn copy, a bad sector) is refused even where the zip container still
    reads, which it does when the damage falls inside tensor data.
    """
    crc = 0

    def walk(value: Any) -> None:
        nonlocal crc
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            crc = zlib.crc32(f"T{tensor.dtype}{tuple(tensor.shape)}".encode(), crc)
            if tensor.numel():
                crc = zlib.crc32(tensor.reshape(-1).view(torch.uint8).numpy().data, crc)
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if key != "checksum":
                    crc = zlib.crc32(f"K{key!r}".encode(), crc)
                    walk(value[key])
        elif isinstance(value, (list, tuple)):
            crc = zlib.crc32(f"L{len(value)}".encode(), crc)
            for item in value:
                walk(item)
        else:
            crc = zlib.crc32(f"V{value!r}".encode(), crc)

    walk(state)
    return crc


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``last.pt`` -> ``last.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_previous(path: Path) -> None:
    """Atomically make ``previous_path(path)`` the file now at ``path`` (a hard link, else a copy)."""
    previous = previous_path(path)
    staging = path.with_name(f".{previous.name}.link.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    try:
        os.link(path, staging)
    except OSError:  # no hard links on this file system
        shutil.copyfile(path, staging)
    os.replace(staging, previous)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike, keep_previous: bool = False) -> None:
    """Atomically write ``state`` (must contain ``"model"``) to ``path``.

    The bytes go to a temporary file beside ``path`` that is renamed over it only when complete, so
    a process killed at any moment leaves the old complete file or the new one. ``keep_previous``
    first keeps the file being replaced as ``<stem>.prev.pt`` (see :func:`load_resume_checkpoint`).
    A failed write (full disk, read-only or vanished folder) raises CheckpointError, leaves the
    existing checkpoint untouched and removes the temporary file.
    """
    if "model" not in state:
        raise ValueError("a checkpoint needs a 'model' entry holding the state dict")
    state = {"format": CHECKPOINT_FORMAT, **state}
    state["checksum"] = state_checksum(state)
    path = Path(path)
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(state, handle)
            fault_point("checkpoint_write")
            if keep_previous and path.is_file():
                _keep_previous(path)
    except OSError as error:
        kept = (f"the last good checkpoint {str(path)!r} was left as it was" if path.is_file()
                else "no earlier checkpoint existed")
        raise CheckpointError(f"cannot write checkpoint {str(path)!r}: {error.strerror or error} "
                              f"(errno {error.errno}); {kept}. Free space or fix the permissions of "
                              f"{str(path.parent)!r}, then --resume") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    """'cannot be read' for bytes torch.load could not parse, with the unpickler's detail only where it
    says something (a text file makes it raise ``KeyError(101)``: no detail, but 'it is a text file')."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        head = b"?"
    detail = _first_line(error)
    if not head:
        detail = "the file is empty"
    elif isinstance(error, (KeyError, IndexError, EOFError)) or re.fullmatch(r"[\w.' -]{0,12}", detail) \
            or detail.startswith("Weights only load failed"):
        try:
            head.decode("utf-8")
            detail = "it is a text file" if b"\0" not in head else ""
        except UnicodeDecodeError:
            detail = ""
    return CheckpointError(f"checkpoint {str(path)!r} cannot be read (truncated or not a torch file?)"
                           + (f": {detail}" if detail else ""))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; raise CheckpointError if unsafe, torn or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if not found:  # not a refused object: the bytes are no pickle at all (garbage, torn, another format)
            raise _unreadable(path, error) from None
        detail = f"it holds {found.group(1)}"
        raise CheckpointError(
            f"checkpoint {str(path)!r} was refused: it contains pickled objects other than tensors and "
            f"plain containers, which could run code when loaded ({detail}). Re-save only the "
            f"state dict (torch.save({{'model': model.state_dict()}}, ...)) from a trusted source."
        ) from None
    except Exception as error:  # noqa: BLE001 - torn bytes make the unpickler raise IndexError, KeyError, ...
        raise _unreadable(path, error) from None
    if isinstance(state, dict) and "checksum" in state and state_checksum(state) != state["checksum"]:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: its contents do not match the checksum "
                              f"written with it (changed on disk or copied incompletely)")
    if isinstance(state, dict) and "model" not in state and state and all(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = {"model": state}  # a bare state dict
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} has no 'model' entry; expected a dict saved by "
                              f"videoattn or a bare state dict")
    model_state = state["model"]
    bad = ([repr(key) for key, value in model_state.items()
            if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
           if isinstance(model_state, dict) else [type(model_state).__name__])
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r}: its 'model' entry must map parameter names to tensors; "
                              f"found {', '.join(bad[:3])}")
    if model_state and all(key.startswith("module.") for key in model_state):
        state["model"] = {key[len("module."):]: value for key, value in model_state.items()}
    return state


_RESUME_KEYS = ("model", "optimizer", "position", "rng")


def load_resume_checkpoint(path: str | os.PathLike, warn: bool = True) -> tuple[Path, dict[str, Any]]:
    """The state to resume from: ``path`` (``last.pt``) if it loads and is a training checkpoint,
    else the previous good one kept beside it (``last.prev.pt``).

    A ``last.pt`` that cannot be read (truncated, torn by a non-atomic copy, not a torch file) or
    lacks the entries of a training checkpoint is reported on stderr and renamed to
    ``last.corrupt.pt`` (kept for inspection, and so that it never becomes ``last.prev.pt``). Raises
    CheckpointError naming both files when neither can be used.
    """
    path = Path(path)
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            problems.append(f"{str(candidate)!r} does not exist")
            continue
        try:
            state = load_checkpoint(candidate)
            missing = [key for key in _RESUME_KEYS if key not in state]
            if missing:
                raise CheckpointError(f"checkpoint {str(candidate)!r} is not a training checkpoint: it lacks "
                                      f"{', '.join(repr(k) for k in missing)}")
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if candidate != path:
            if warn:
                print(f"warning: {problems[0]}; resuming from the previous good checkpoint {str(candidate)!r} "
                      f"(position {state['position'].get('global_step')})", file=sys.stderr)
            if path.is_file():
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_name(f"{path.stem}.corrupt{path.suffix}"))
        return candidate, state
    raise CheckpointError("cannot resume: " + "; ".join(problems))


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
