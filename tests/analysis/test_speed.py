"""``videoattn profile --speed`` / ``videoattn.analysis.speed``: a real training step, timed, against a
matrix-product rate measured in the same process."""

from __future__ import annotations

import json

import pytest
import torch

from videoattn.analysis.complexity import profile_model
from videoattn.analysis.speed import TrainingStep, matmul_rate, measure_speed
from videoattn.cli import main
from videoattn.errors import ConfigError

TINY = {"base_channels": 8}


def test_matmul_rate_is_the_rate_of_the_product_it_times():
    rate = matmul_rate(torch.float32, size=256, repeats=2)
    assert 0.5 < rate < 1e5  # GFLOP/s: any CPU lies well inside this


def test_training_step_updates_the_weights_like_the_engine():
    case = TrainingStep("r2d18", batch=2, frames=2, size=32, **TINY)
    before = {n: p.detach().clone() for n, p in case.model.named_parameters()}
    seconds = case.step()
    assert seconds > 0
    changed = [n for n, p in case.model.named_parameters() if not torch.equal(p, before[n])]
    assert "head.fc.weight" in changed or any(n.endswith("fc.weight") for n in changed)
    assert all(p.grad is None for p in case.model.parameters())  # zero_grad(set_to_none=True)
    assert case.model.training
    case.infer()
    assert case.model.training  # back in train mode after the eval forward


def test_measure_speed_reports_consistent_rates():
    report = measure_speed("r2d18", batch=2, frames=2, size=32, rounds=2, **TINY)
    macs = profile_model("r2d18", num_classes=174, num_frames=2, size=32, **TINY).macs
    assert report.input_shape == (2, 3, 2, 32, 32)
    assert len(report.step_seconds) == 2 and len(report.inference_seconds) == 2
    assert report.forward_gmacs_per_clip == pytest.approx(macs / 1e9)
    assert report.train_clips_per_second == pytest.approx(2 / min(report.step_seconds))
    assert report.achieved_gflops == pytest.approx(6 * macs * 2 / min(report.step_seconds) / 1e9)
    assert report.of_matmul_rate == pytest.approx(report.achieved_gflops / report.matmul_gflops)
    assert report.matmul_gflops > 0
    assert report.peak_memory_mib > 0
    data = report.to_dict()
    assert data["of_matmul_rate"] == report.of_matmul_rate and data["input_shape"] == [2, 3, 2, 32, 32]


def test_channels_last_speed_case_has_nhwc_trunk_weights():
    case = TrainingStep("r2d18", batch=2, frames=2, size=32, channels_last=True, **TINY)
    assert case.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_profile_cli_speed(capsys):
    args = ["profile", "r2d18", "--option", "base_channels=8", "--frames", "2", "--size", "32", "--speed",
            "--rounds", "1", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
        text = capsys.readouterr().out
        assert "clips/s" in text and "of this device's fp32 matrix-product rate" in text
        assert main([*args, "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads(capsys.readouterr().out)
    assert data["speed"]["threads"] == 1 and data["speed"]["precision"] == "fp32"
    assert data["speed"]["train_clips_per_second"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--precision", "fp16"], "fp16"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--rounds", "0"], "rounds must be >= 1"),
])
def test_profile_cli_speed_errors_are_one_line(capsys, extra, message):
    assert main(["profile", "r2d18", "--option", "base_channels=8", "--frames", "2", "--size", "32",
                 "--speed", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_training_step_rejects_unknown_precision():
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainingStep("r2d18", precision="fp8", frames=2, size=32, **TINY)
