"""The files that describe a run in its work dir: ``config.yaml`` and ``metadata.json``."""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..config import Config, save_config
from ..utils.io import atomic_write_json
from ..version import __version__
from .distributed import DistContext

__all__ = ["environment_metadata", "git_commit", "write_run_files"]


def git_commit() -> str | None:
    """The commit of the videoattn source tree, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_metadata(ctx: DistContext) -> dict[str, Any]:
    """Versions, machine, device and process layout of this run."""
    return {
        "videoattn_version": __version__, "git_commit": git_commit(),
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "platform": platform.platform(), "hostname": platform.node(),
        "device": str(ctx.device),
        "device_name": (torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda"
                        else platform.processor() or "cpu"),
        "world_size": ctx.world_size, "backend": ctx.backend,
        "num_threads": torch.get_num_threads(),
    }


def write_run_files(work_dir: Path, config: Config, ctx: DistContext, run: dict[str, Any],
                    resumed_from: str | None) -> None:
    """Write ``config.yaml`` and ``metadata.json`` (environment + ``run``: data sizes, steps, ...).

    A resumed run keeps the metadata of its earlier sessions under ``previous_sessions``. Temporary
    checkpoint files left by a run killed while saving are removed.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(".*.pt.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    save_config(config, work_dir / "config.yaml")
    metadata = {**environment_metadata(ctx), **run, "command": sys.argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": resumed_from}
    path = work_dir / "metadata.json"
    if resumed_from and path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
            metadata["previous_sessions"] = [*previous.pop("previous_sessions", []), previous]
        except (OSError, json.JSONDecodeError):
            pass
    atomic_write_json(path, metadata)
