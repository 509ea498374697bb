"""Two processes under torchrun (gloo, CPU) compute the same weights as one with the same global batch.

Why frozen BatchNorm: with ordinary BN each process normalises with the statistics of its own
half-batch, which legitimately differ from the full-batch statistics of a single process, so the
runs would differ by more than rounding. SyncBatchNorm would fix that but PyTorch supports it only
on GPUs. With every BN frozen (``train.freeze_bn: all``, BN uses its running statistics) and no
dropout, each sample's gradient is independent of how the batch is split, and DDP's gradient
average over 2 x 2 clips equals the single process's mean over 4: the only remaining difference is
float summation order. Validation is sharded over the two processes and gathered, so its accuracy
must equal the single-process one exactly.
"""

import json
import os
import subprocess
import sys

import torch

from videoattn.engine import train
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import load_checkpoint

SECTIONS = {"train": {"epochs": 1, "batch_size": 4, "lr": 0.05, "freeze_bn": "all", "val_interval": 1},
            "model": {"dropout": 0.0}}


def test_two_processes_equal_one_process_with_same_global_batch(make_config, make_config_file, tmp_path):
    single = train(make_config(tmp_path / "single", **SECTIONS))

    config_path = make_config_file(tmp_path / "ddp.yaml", tmp_path / "ddp", **SECTIONS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "videoattn", "train", "--config", str(config_path)],
        capture_output=True, text=True, timeout=400, env=env)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]

    metadata = json.loads((tmp_path / "ddp" / "metadata.json").read_text())
    assert metadata["world_size"] == 2 and metadata["backend"] == "gloo"
    assert metadata["micro_batch_per_process"] == 2
    ddp_state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    single_state = load_checkpoint(tmp_path / "single" / "last.pt")
    assert ddp_state["position"]["global_step"] == single.global_step > 0
    torch.manual_seed(1)  # the config's seed: the trainer's initial weights
    initial = build_model(make_config(tmp_path / "unused", **SECTIONS).model, single_state["num_classes"])
    initial = initial.state_dict()
    for key, value in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # The comparison means something only if training moved the weights well beyond the tolerance.
    moved = max(float((single_state["model"][key] - initial[key]).abs().max())
                for key in initial if initial[key].is_floating_point())
    assert moved > 1e-3
    history = ddp_state["history"][0]
    assert history["val_top1"] == single.history[0]["val_top1"]
    assert abs(history["train_loss"] - single.history[0]["train_loss"]) < 1e-4
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
