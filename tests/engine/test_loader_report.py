"""The engine's loader report (clips/s per worker and in total, the hint) and ``data.transforms_on``."""

from __future__ import annotations

import json
import time

import pytest
import torch

from videoattn.data.dataset import VideoDataset
from videoattn.engine import train
from videoattn.errors import ConfigError

SHORT = {"val_interval": 0, "max_steps": 3, "epochs": 1}


def test_transforms_on_device_trains_like_cpu(make_config, tmp_path):
    """On a CPU device the device path's clips are bit-identical, so the losses are too."""
    cpu = train(make_config(tmp_path / "cpu", train=SHORT, data={"transforms_on": "cpu"}))
    device = train(make_config(tmp_path / "device", train=SHORT, data={"transforms_on": "device"}))
    assert cpu.summary["loader"]["transforms_on"] == "cpu"
    assert device.summary["loader"]["transforms_on"] == "device"
    assert device.global_step == cpu.global_step == 3
    metadata = json.loads((device.work_dir / "metadata.json").read_text())
    assert metadata["train_data"]["transforms_on"] == "device"
    losses = [[json.loads(line)["loss"] for line in (r.work_dir / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "step"] for r in (cpu, device)]
    assert len(losses[0]) == 3 and losses[0] == losses[1]


def test_transforms_on_auto_is_cpu_without_cuda_and_device_refuses_colour_jitter(make_config, tmp_path):
    result = train(make_config(tmp_path / "auto", train=SHORT))
    assert result.summary["loader"]["transforms_on"] == "cpu"
    config = make_config(tmp_path / "jitter", train=SHORT,
                         data={"transforms_on": "device", "options": {"color_jitter": [0.4, 0.4, 0.4, 0.0]}})
    with pytest.raises(ConfigError, match="data.transforms_on.*colour jitter"):
        train(config)


def test_loader_throughput_reported_without_hint_when_fast(make_config, tmp_path):
    result = train(make_config(tmp_path / "fast", train=SHORT))
    loader = json.loads((tmp_path / "fast" / "summary.json").read_text())["loader"]
    assert loader == result.summary["loader"]
    assert set(loader["clips_per_second_per_worker"]) == {"main"}  # num_workers 0: the main process loads
    assert loader["clips_per_second"] == pytest.approx(loader["clips_per_second_per_worker"]["main"])
    assert loader["clips_per_second"] > 0 and loader["model_clips_per_second"] > 0
    # num_workers 0 loads in the training loop, so its wait is well over 10% here: the hint says so
    assert (loader["hint"] is None) == (loader["data_wait_fraction"] <= 0.10)
    assert set(loader["peak_host_memory_mib_per_worker"]) == {"main"}
    assert 10 < loader["peak_host_memory_mib_per_worker"]["main"] < 64 * 1024


def test_slow_loader_gets_a_hint(make_config, tmp_path, monkeypatch, capsys):
    load = VideoDataset.load

    def slow_load(self, index, epoch=0, attempt=0):
        if self.split == "train":
            time.sleep(0.25)  # 4 clips per step: ~1 s of decoding per step against a tiny model
        return load(self, index, epoch, attempt)

    monkeypatch.setattr(VideoDataset, "load", slow_load)
    result = train(make_config(tmp_path / "slow", train={**SHORT, "progress": True}, data={"num_workers": 1}))
    loader = result.summary["loader"]
    assert loader["data_wait_fraction"] > 0.10
    assert set(loader["clips_per_second_per_worker"]) == {"worker0"}
    assert loader["clips_per_second"] < 4.1  # one worker sleeping 0.25 s a clip
    assert loader["model_clips_per_second"] > loader["clips_per_second"]
    hint = loader["hint"]
    assert hint.startswith("data wait is ") and "\n" not in hint
    assert 10 < loader["peak_host_memory_mib_per_worker"]["worker0"] < 64 * 1024
    steps = [json.loads(line) for line in (tmp_path / "slow" / "metrics.jsonl").read_text().splitlines()]
    waits = [line["data_wait_fraction"] for line in steps if line["kind"] == "step"]
    assert len(waits) == 3 and all(0.10 < w <= 1.0 for w in waits[1:])  # every step waits on the worker
    assert f"the loader delivers {loader['clips_per_second']:.1f} clips/s" in hint
    assert f"the model consumes {loader['model_clips_per_second']:.1f}" in hint
    assert "data.decoder=torchcodec" in hint or "data.decoder=pyav" in hint
    assert "data.num_workers=1 now" in hint and "model.num_frames=4 now" in hint
    assert hint in capsys.readouterr().err.splitlines()  # printed with the progress output
    quiet = train(make_config(tmp_path / "quiet", train=SHORT, data={"num_workers": 1}))
    assert quiet.summary["loader"]["hint"] and quiet.summary["loader"]["hint"] not in capsys.readouterr().err


def test_transforms_on_device_resumes_at_the_same_sample(make_config, tmp_path):
    """Stopped mid-epoch and resumed (with a loader worker), the device path ends with the same weights
    as an uninterrupted run."""
    import torch

    from videoattn.engine.checkpoint import load_checkpoint

    data = {"num_workers": 1, "transforms_on": "device"}
    common = {"val_interval": 0, "epochs": 2}
    full = train(make_config(tmp_path / "full", train=common, data=data))
    train(make_config(tmp_path / "split", train={**common, "max_steps": 3}, data=data))
    resumed = train(make_config(tmp_path / "split", train=common, data=data), resume=True)
    assert resumed.global_step == full.global_step > 3
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_two_processes_with_device_transforms_equal_one_cpu_process(make_config, make_config_file, tmp_path):
    """DDP sharding is unchanged by the device path: 2 ranks (gloo, CPU, frozen BN, no dropout; see
    test_ddp.py) transforming on the device give one CPU-path process's weights, and the loader report
    lists every rank's producer."""
    import os
    import subprocess
    import sys

    import torch

    from videoattn.engine.checkpoint import load_checkpoint

    sections = {"train": {"epochs": 1, "batch_size": 4, "lr": 0.05, "freeze_bn": "all", "val_interval": 0,
                          "device": "cpu"}, "model": {"dropout": 0.0}}
    single = train(make_config(tmp_path / "single", data={"transforms_on": "cpu"}, **sections))
    path = make_config_file(tmp_path / "ddp.yaml", tmp_path / "ddp", data={"transforms_on": "device"}, **sections)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "videoattn", "train", "--config", str(path)],
        capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ddp["position"]["global_step"] == single.global_step > 0
    mine = load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    for key, value in mine.items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    loader = json.loads((tmp_path / "ddp" / "summary.json").read_text())["loader"]
    assert loader["transforms_on"] == "device"
    assert set(loader["clips_per_second_per_worker"]) == {"main@rank0", "main@rank1"}


@pytest.mark.parametrize("decoder, suggestion", [("pyav", "data.decoder=nvdec or dali (GPU decoding)"),
                                                 ("frames", "data.decoder=nvjpeg or dali (GPU decoding)"),
                                                 ("nvdec", "data.options.cache_decoded=true")])
def test_hint_on_a_gpu_names_the_gpu_decoders(decoder, suggestion):
    """The hint of a CUDA run that waits on CPU decoding names the GPU decoders for its media first."""
    from types import SimpleNamespace

    from videoattn.config import config_from_dict
    from videoattn.engine.trainer import _Trainer

    trainer = SimpleNamespace(totals={"seconds": 10.0, "data_wait": 5.0, "clips": 400.0},
                              config=config_from_dict({"model": {"num_frames": 8}, "data": {"num_workers": 14}}),
                              train_set=SimpleNamespace(decoder_backend=decoder), transforms_on="device",
                              ctx=SimpleNamespace(device=torch.device("cuda")))
    report = _Trainer._loader_report(trainer, [{0: [100.0, 10.0, 2048.0]}])
    assert report["data_wait_fraction"] == 0.5
    assert report["hint"].split("; try ")[1].startswith(suggestion)
