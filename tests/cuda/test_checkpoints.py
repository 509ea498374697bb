"""Checkpoints across devices, and bit-identical resume on CUDA in deterministic mode."""

import pytest
import torch

from videoattn.engine import train
from videoattn.engine.builders import build_model
from videoattn.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.cuda

STEPS = {"val_interval": 0}


@pytest.mark.parametrize("save_on, resume_on", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoint_from_one_device_loads_and_resumes_on_the_other(make_config, tmp_path, no_tf32, save_on,
                                                                   resume_on):
    work = tmp_path / "run"
    train(make_config(work, train={**STEPS, "device": save_on, "max_steps": 2}))
    state = load_checkpoint(work / "last.pt")  # map_location="cpu"
    assert all(v.device.type == "cpu" for v in state["model"].values())
    on_gpu = load_checkpoint(work / "last.pt", map_location="cuda")
    assert all(v.is_cuda for v in on_gpu["model"].values())

    # The same weights give the same function on either device.
    config = make_config(work)
    cpu_model = build_model(config.model, state["num_classes"], pretrained=False)
    cpu_model.load_state_dict(state["model"])
    gpu_model = build_model(config.model, state["num_classes"], pretrained=False).cuda()
    gpu_model.load_state_dict(on_gpu["model"])
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(gpu_model.eval()(clip.cuda()).cpu(), cpu_model.eval()(clip),
                                   rtol=1e-4, atol=1e-5)

    # Resume on the other device: optimizer state and position follow the weights there.
    resumed = train(make_config(work, train={**STEPS, "device": resume_on, "max_steps": 4}), resume=True)
    assert resumed.global_step == 4
    final = load_checkpoint(work / "last.pt")
    assert final["position"]["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in final["model"].values() if v.is_floating_point())
    assert any(not torch.equal(final["model"][k], v) for k, v in state["model"].items() if v.is_floating_point())


def test_deterministic_stop_and_resume_is_bit_identical_on_cuda(make_config, tmp_path):
    common = {**STEPS, "device": "cuda", "deterministic": True}
    full = train(make_config(tmp_path / "full", train=common))
    train(make_config(tmp_path / "split", train={**common, "max_steps": 3}))
    assert load_checkpoint(tmp_path / "split" / "last.pt")["position"]["global_step"] == 3
    resumed = train(make_config(tmp_path / "split", train=common), resume=True)
    assert resumed.global_step == full.global_step > 3
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]


def test_deterministic_runs_repeat_exactly_on_cuda(make_config, tmp_path):
    common = {**STEPS, "device": "cuda", "deterministic": True, "max_steps": 3}
    train(make_config(tmp_path / "a", train=common))
    train(make_config(tmp_path / "b", train=common))
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
