"""Process-wide settings of a training run: threads, determinism, seeds, and the work dir guard."""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from ..config import Config
from ..errors import ConfigError
from .checkpoint import previous_path

__all__ = ["CUBLAS_WORKSPACE", "check_work_dir", "deterministic_cublas_workspace", "nondeterministic_op_error",
           "reseed", "restored_process_settings", "setup_determinism", "step_seed"]

#: The cuBLAS workspace setting that makes cuBLAS reproducible (CUDA >= 10.2 docs, "Results
#: reproducibility"); ``torch.use_deterministic_algorithms(True)`` refuses cuBLAS calls without it.
CUBLAS_WORKSPACE = ":4096:8"


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The seed of one micro-step: a pure function of (run seed, optimizer step, micro-step, rank)."""
    value = (seed * 1_000_003 + step) * 1_009 + micro
    return (value * 8_191 + rank) % (2**63 - 1)


def reseed(seed: int, device: torch.device) -> None:
    """Seed the generators the model step draws from.

    ``torch.manual_seed`` would also queue a lazy CUDA seeding with a captured stack trace (~170 us
    per call on CPU builds); seeding the CPU generator and, on GPU, the current device directly
    costs about 1 us.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def deterministic_cublas_workspace() -> None:
    """Export ``CUBLAS_WORKSPACE_CONFIG`` for deterministic mode (a value the user set is kept).

    cuBLAS reads it when the CUDA context / its handles are created, so :func:`videoattn.engine.train`
    calls this before :func:`~videoattn.engine.distributed.init_distributed` selects the device; it
    stays set for the rest of the process (it only fixes the size of cuBLAS's workspaces).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def nondeterministic_op_error(error: BaseException) -> ConfigError | None:
    """The one-line ConfigError for torch's refusal of an operator in deterministic mode, else None.

    torch raises ``RuntimeError("<op> does not have a deterministic implementation, but you set
    'torch.use_deterministic_algorithms(True)'. ...")`` (several lines) when such an operator runs.
    """
    found = re.match(r"\s*(\S+) does not have a deterministic implementation", str(error))
    if not isinstance(error, RuntimeError) or not found:
        return None
    return ConfigError(f"config key 'train.deterministic': true, but this model runs {found.group(1)}, which "
                       f"has no deterministic implementation on this device (docs/reliability.md names the "
                       f"blocks and options that use it); set train.deterministic=false or choose block "
                       f"options without it")


def setup_determinism(config: Config) -> None:
    """Threads, deterministic algorithms / cuDNN autotuning, and the Python/NumPy/torch seeds.

    ``train.deterministic: true``: ``torch.use_deterministic_algorithms(True)`` (an op without a
    deterministic kernel raises instead of running), cuDNN deterministic with autotuning off, and
    ``CUBLAS_WORKSPACE_CONFIG`` (see :func:`deterministic_cublas_workspace`). Off (the default), cuDNN
    autotunes on CUDA. docs/reliability.md says what each mode guarantees on each device.
    """
    t = config.train
    if t.num_threads is not None:
        torch.set_num_threads(t.num_threads)
    if t.deterministic:
        deterministic_cublas_workspace()
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest kernels
    torch.manual_seed(t.seed)
    import numpy as np

    random.seed(t.seed)
    np.random.seed(t.seed % 2**32)


@contextlib.contextmanager
def restored_process_settings() -> Iterator[None]:
    """Restore the settings :func:`setup_determinism` changes, so a caller (a notebook, the demo, a
    test session) keeps its own."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def check_work_dir(work_dir: Path, resume: bool) -> Path | None:
    """``work_dir/last.pt`` to resume from, None for a fresh run; refuse to overwrite a run."""
    last = work_dir / "last.pt"
    if last.exists() or previous_path(last).exists():  # last.pt may have been set aside as corrupt
        if not resume:
            raise ConfigError(f"config key 'train.work_dir': {str(work_dir)!r} already holds a run "
                              f"(last.pt); pass --resume to continue it or choose another train.work_dir")
        return last
    return None
