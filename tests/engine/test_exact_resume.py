"""A run killed with SIGKILL mid-training and restarted with --resume ends bit-identical (CPU).

The killed process is a real ``videoattn train`` subprocess, killed as soon as its first periodic
checkpoint appears (so usually while it is training or writing the next one). The checkpoint it
leaves must load, and the resumed run must end with exactly the weights of an uninterrupted run.
"""

import signal
import subprocess
import sys
import time

import torch

from videoattn.engine import train
from videoattn.engine.checkpoint import load_checkpoint

SECTIONS = {"train": {"epochs": 6, "val_interval": 0, "checkpoint_interval": 1}}


def test_sigkill_then_resume_is_bit_identical(make_config, make_config_file, tmp_path):
    reference = train(make_config(tmp_path / "reference", **SECTIONS))
    total_steps = reference.global_step

    config_path = make_config_file(tmp_path / "killed.yaml", tmp_path / "killed", **SECTIONS)
    command = [sys.executable, "-m", "videoattn", "train", "--config", str(config_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{output}"

    killed_at = load_checkpoint(last)["position"]["global_step"]  # the kill left a loadable file
    assert 1 <= killed_at < total_steps

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = load_checkpoint(last)
    assert final["position"]["global_step"] == total_steps
    expected = load_checkpoint(tmp_path / "reference" / "last.pt")
    for key, value in expected["model"].items():
        assert torch.equal(value, final["model"][key]), key
    for key, value in expected["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], final["optimizer"]["state"][key]["momentum_buffer"])
    assert [r["train_loss"] for r in final["history"]] == [r["train_loss"] for r in reference.history]
    assert not list((tmp_path / "killed").glob(".*.tmp"))
