"""Helpers for the run-fault tests: a tiny model with attention blocks and weight comparisons."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from videoattn.engine.checkpoint import load_checkpoint

#: Space-time non-local blocks in a narrow R2D-18 (4 frames of 32 px): an attention model small
#: enough for CPU tests. Validation every epoch so that kills during evaluation are possible.
ATTENTION_MODEL = {"name": "r2d18_nl", "num_frames": 4, "dropout": 0.5, "options": {"base_channels": 8}}


def sections(epochs: int = 2, workers: int = 0, **train) -> dict:
    return {"model": dict(ATTENTION_MODEL), "data": {"num_workers": workers},
            "train": {"epochs": epochs, "val_interval": 1, "checkpoint_interval": 1, **train}}


def run_cli(config_path: Path, *args: str, fault: str | None = None, timeout: float = 300):
    """``videoattn train --config`` in a subprocess, optionally killing itself at ``fault``."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    env.pop("VIDEOATTN_FAULT", None)
    if fault:
        env["VIDEOATTN_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "videoattn", "train", "--config", str(config_path), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_killed(result) -> None:
    assert result.returncode == -signal.SIGKILL, f"the run was not killed:\n{result.stderr[-3000:]}"


def assert_same_final_state(expected_path: Path, final_path: Path) -> None:
    expected, final = load_checkpoint(expected_path), load_checkpoint(final_path)
    assert final["position"] == expected["position"]
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key
    for key, value in expected["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], final["optimizer"]["state"][key]["momentum_buffer"]), key
    assert [r["train_loss"] for r in final["history"]] == [r["train_loss"] for r in expected["history"]]
    assert [r.get("val_top1") for r in final["history"]] == [r.get("val_top1") for r in expected["history"]]
