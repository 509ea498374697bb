"""``predict`` and ``export`` from a checkpoint trained on CUDA."""

import json

import pytest
import torch

from videoattn import Predictor
from videoattn.cli import main
from videoattn.config import load_config
from videoattn.deploy.export import export_model, run_exported

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda_trained(make_config_file, synthetic_root, tmp_path):
    """``(config.yaml, best.pt, two video paths)`` of a 1-epoch CUDA run of the tiny recipe."""
    work = tmp_path / "run"
    config_path = make_config_file(tmp_path / "c.yaml", work, train={"device": "cuda", "epochs": 1})
    assert main(["train", "--config", str(config_path), "--no-progress"]) == 0
    assert json.loads((work / "metadata.json").read_text())["device"].startswith("cuda")
    videos = sorted(str(p) for p in (synthetic_root / "videos").iterdir())[:2]
    return work / "config.yaml", work / "best.pt", videos


def test_predict_on_cuda_and_cpu_agree(cuda_trained, no_tf32, tmp_path):
    config_path, checkpoint, videos = cuda_trained
    gpu = Predictor(config_path, checkpoint, views="1x1", topk=3, device="cuda")
    cpu = Predictor(config_path, checkpoint, views="1x1", topk=3, device="cpu")
    assert next(gpu.model.parameters()).is_cuda and not next(cpu.model.parameters()).is_cuda
    (gpu_results, gpu_skipped), (cpu_results, cpu_skipped) = gpu.predict_many(videos), cpu.predict_many(videos)
    assert not gpu_skipped and not cpu_skipped and len(gpu_results) == len(videos)
    for on_gpu, on_cpu in zip(gpu_results, cpu_results):
        assert on_gpu["path"] == on_cpu["path"]
        assert on_gpu["probabilities"] == pytest.approx(on_cpu["probabilities"], abs=1e-5)
    out = tmp_path / "predictions.json"
    assert main(["predict", videos[0], "--config", str(config_path), "--checkpoint", str(checkpoint),
                 "--device", "cuda", "--out", str(out), "--no-progress"]) == 0
    assert len(json.loads(out.read_text())["results"]) == 1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_from_a_cuda_trained_checkpoint(cuda_trained, tmp_path, fmt):
    config_path, checkpoint, _ = cuda_trained
    out = tmp_path / f"model.{fmt}"
    result = export_model(load_config(config_path), checkpoint, fmt, out)
    assert out.is_file() and result["max_abs_diff"] is not None and result["max_abs_diff"] <= 1e-4
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    scores = run_exported(out, fmt, clip)
    assert scores.shape == (1, 8) and torch.isfinite(scores).all()
