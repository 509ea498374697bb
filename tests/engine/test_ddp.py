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

import pytest
import torch

from videoattn.engine import train
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import load_checkpoint
from videoattn.engine.distributed import init_distributed
from videoattn.errors import ConfigError

# gloo on CPU, whatever GPUs the machine has (train.device: auto would give each rank a GPU).
SECTIONS = {"train": {"epochs": 1, "batch_size": 4, "lr": 0.05, "freeze_bn": "all", "val_interval": 1,
                      "device": "cpu"},
            "model": {"dropout": 0.0}}


def test_two_processes_equal_one_process_with_same_global_batch(make_config, make_config_file, tmp_path):
    _two_processes_equal_one(make_config, make_config_file, tmp_path, SECTIONS)


def test_ddp_with_the_dali_decoder_equals_one_process(make_config, make_config_file, tmp_path):
    """``data.decoder: dali`` (DALI's CPU backend here): each rank samples its own shard in its workers and
    decodes the payloads in its training process; the sharding and the result are those of one process."""
    pytest.importorskip("nvidia.dali")
    sections = {**SECTIONS, "data": {"decoder": "dali", "num_workers": 1,
                                     "options": {"cache_decoded": False}}}
    _two_processes_equal_one(make_config, make_config_file, tmp_path, sections)
    assert json.loads((tmp_path / "ddp" / "metadata.json").read_text())["train_data"]["decoder"] == "dali"


def _two_processes_equal_one(make_config, make_config_file, tmp_path, sections):
    single = train(make_config(tmp_path / "single", **sections))

    config_path = make_config_file(tmp_path / "ddp.yaml", tmp_path / "ddp", **sections)
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
    initial = build_model(make_config(tmp_path / "unused", **sections).model, single_state["num_classes"])
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


def _simulate_gpus(monkeypatch, count: int, local_world_size: int | None, local_rank: int) -> list:
    """A torchrun rank's environment on a node with ``count`` GPUs; CUDA calls are recorded, and
    joining a process group fails the test (the check must come first)."""
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: calls.append(("init_process_group",)))
    import videoattn.engine.distributed as distributed

    # no rendezvous store either (torchrun's MASTER_ADDR/PORT are not set here)
    monkeypatch.setattr(distributed, "_rendezvous_store", lambda rank, world_size: None)
    world = local_world_size or 1
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    if local_world_size is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world_size))
    return calls


@pytest.mark.parametrize("device", ["auto", "cuda"])
@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_ranks_than_gpus_is_one_config_error_on_every_rank(monkeypatch, device, local_rank):
    # torchrun --nproc-per-node 2 on a 1-GPU machine: rank 0 (whose GPU exists) stops too, before
    # torch.cuda.set_device and before joining the process group.
    calls = _simulate_gpus(monkeypatch, count=1, local_world_size=2, local_rank=local_rank)
    with pytest.raises(ConfigError) as caught:
        init_distributed(device)
    message = str(caught.value)
    assert "\n" not in message and "'train.device'" in message and repr(device) in message
    assert "LOCAL_WORLD_SIZE=2" in message and "torch.cuda.device_count() is 1" in message
    assert f"local rank {local_rank}" in message
    assert "train.device=cpu" in message and "--nproc-per-node 1" in message
    assert calls == []


def test_local_rank_beyond_gpus_without_local_world_size(monkeypatch):
    calls = _simulate_gpus(monkeypatch, count=2, local_world_size=None, local_rank=2)
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=2 .*device_count\(\) is 2"):
        init_distributed("auto")
    assert calls == []


def test_as_many_ranks_as_gpus_or_cpu_is_accepted(monkeypatch):
    calls = _simulate_gpus(monkeypatch, count=2, local_world_size=2, local_rank=1)
    ctx = init_distributed("auto")
    assert ctx.device == torch.device("cuda", 1) and ctx.backend == "nccl"
    assert calls == [("set_device", 1), ("init_process_group",)]
    calls = _simulate_gpus(monkeypatch, count=1, local_world_size=2, local_rank=1)
    ctx = init_distributed("cpu")  # gloo on CPU: the GPU count does not matter
    assert ctx.device == torch.device("cpu") and ctx.backend == "gloo"
    assert calls == [("init_process_group",)]


def test_cli_train_reports_the_gpu_count_in_one_line(monkeypatch, make_config_file, tmp_path, capsys):
    from videoattn.cli import main

    _simulate_gpus(monkeypatch, count=1, local_world_size=2, local_rank=1)
    path = make_config_file(tmp_path / "c.yaml", tmp_path / "run", train={"device": "auto"})
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LOCAL_WORLD_SIZE=2" in err[0] and "device_count() is 1" in err[0], err
    assert not (tmp_path / "run").exists()
