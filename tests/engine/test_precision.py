"""``videoattn.engine.precision``: one validation of precision values, one autocast/scaler rule, one
training step (used by the trainer and by ``profile --speed``), and ``eval.precision`` for test/predict."""

from __future__ import annotations

import pytest
import torch

from videoattn.config import config_from_dict
from videoattn.engine import precision as P
from videoattn.errors import ConfigError


@pytest.mark.parametrize("section, key", [("train", "train.precision"), ("eval", "eval.precision")])
def test_config_precision_keys_are_checked_in_one_place(section, key):
    with pytest.raises(ConfigError) as error:
        config_from_dict({section: {"precision": "fp8"}})
    message = str(error.value)
    assert f"{key!r}: got 'fp8'" in message and "auto, fp32, bf16, fp16" in message and "\n" not in message
    assert config_from_dict({section: {"precision": "auto"}})  # 'auto' is one of the values


def test_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert P.resolve_precision("auto", cpu) == "fp32"
    assert P.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match=r"'eval.precision': got 'fp16' but fp16 autocast needs a CUDA device"):
        P.resolve_precision("fp16", cpu, "eval.precision")
    assert P.grad_scaler("bf16", cpu) is None and P.grad_scaler("fp32", cpu) is None
    assert P.Precision.resolve("auto", "cpu").dtype is torch.float32
    with P.autocast_context("bf16", cpu):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype is torch.bfloat16
    with P.autocast_context("auto", cpu):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype is torch.float32


def test_auto_and_bf16_follow_the_gpu_bf16_support(monkeypatch):
    """``torch.device("cuda")`` needs no GPU to exist; the rule reads ``torch.cuda.is_bf16_supported``."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert P.resolve_precision("auto", "cuda") == "bf16" and P.resolve_precision("fp16", "cuda") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert P.resolve_precision("auto", "cuda:0") == "fp32"
    with pytest.raises(ConfigError, match="'train.precision': got 'bf16' but this GPU has no bf16 support"):
        P.resolve_precision("bf16", "cuda")
    # A GPU that only emulates bf16 (no bf16 tensor cores: before Ampere) takes bf16 when asked, not by auto
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert P.resolve_precision("auto", "cuda") == "fp32" and P.resolve_precision("bf16", "cuda") == "bf16"
    assert "emulated" in P.explain_auto_precision("cuda")[1]


def test_evaluation_precision_defaults_to_the_training_one():
    assert P.evaluation_precision(config_from_dict({"train": {"precision": "bf16"}})) == "bf16"
    assert P.evaluation_precision(config_from_dict({"train": {"precision": "fp16"},
                                                    "eval": {"precision": "fp32"}})) == "fp32"


def _reference_sgd_step(weight, bias, x, y, lr, clip):
    """float64 cross-entropy gradient of a linear layer, clipped by global norm, one plain SGD step."""
    w, b = weight.double().clone().requires_grad_(), bias.double().clone().requires_grad_()
    logits = x.double() @ w.T + b
    loss = -(logits.log_softmax(1)[torch.arange(len(y)), y]).mean()
    gw, gb = torch.autograd.grad(loss, (w, b))
    norm = torch.sqrt((gw ** 2).sum() + (gb ** 2).sum())
    scale = min(1.0, clip / (float(norm) + 1e-6))
    return w.detach() - lr * scale * gw, b.detach() - lr * scale * gb


@pytest.mark.parametrize("scaled", [False, True])
def test_training_step_with_and_without_the_gradient_scaler(scaled):
    """The step unscales before clipping: with a loss scale of 2^12 the update equals the plain one."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    expected = _reference_sgd_step(model.weight.detach(), model.bias.detach(), x, y, lr=0.5, clip=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12) if scaled else None
    loss = P.training_step(model, x, y, torch.nn.CrossEntropyLoss(), optimizer, P.Precision("fp32", "cpu"),
                           scaler, clip_grad_norm=0.1)
    assert loss.requires_grad is False
    assert torch.allclose(model.weight.double(), expected[0], atol=1e-6)
    assert torch.allclose(model.bias.double(), expected[1], atol=1e-6)
    assert all(p.grad is None for p in model.parameters())
    if scaled:
        assert scaler.get_scale() == 2.0**12  # finite gradients: the scale stays until its growth interval


def test_profile_speed_times_the_engines_step(monkeypatch):
    from videoattn.analysis.speed import TrainingStep

    calls = []
    real = P.training_step

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "training_step", spy)
    case = TrainingStep("r2d18", batch=2, frames=2, size=32, base_channels=8)
    assert case.step() > 0
    assert len(calls) == 1
    args = calls[0][0]
    assert args[0] is case.model and args[4] is case.optimizer and args[5].name == "fp32"
    assert args[6] is case.scaler is None  # fp32: no scaler; fp16 (CUDA) gets the engine's GradScaler


def test_test_scores_with_eval_precision_not_the_training_one(make_config, tmp_path):
    """A run configured for fp16 (CUDA) can still be tested on this CPU with ``eval.precision: fp32``;
    with ``eval.precision`` unset, test inherits fp16 and refuses it, naming the key."""
    from videoattn.engine import evaluate, train

    config = make_config(tmp_path / "run", train={"max_steps": 1, "epochs": 1, "val_interval": 0})
    train(config)
    checkpoint = str(tmp_path / "run" / "last.pt")
    fp16 = make_config(tmp_path / "run", train={"precision": "fp16"}, eval={"precision": "fp32"})
    assert evaluate(fp16, [checkpoint], views="1x1", output_dir=tmp_path / "out")["num_videos"] == 8
    inherit = make_config(tmp_path / "run", train={"precision": "fp16"})
    with pytest.raises(ConfigError, match="'eval.precision': got 'fp16'"):
        evaluate(inherit, [checkpoint], views="1x1", output_dir=tmp_path / "out2")


def _cpu(monkeypatch, native_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(P, "cpu_has_amx", lambda: amx)


@pytest.mark.parametrize("native, amx, gmacs, expected", [
    (True, False, None, "fp32"),    # work not known: fp32
    (True, False, 0.022, "fp32"),   # the demo's R2D-18 at 32 px: under the bound
    (True, False, 1.0, "bf16"),     # the bound itself
    (True, False, 32.7, "bf16"),    # R2D-50 at 8 x 224 (3.2x faster measured)
    (False, False, 32.7, "fp32"),   # no native bf16: ~30x slower, never
    (True, True, 32.7, "fp32"),     # AMX: not measured here, stays fp32
])
def test_auto_on_cpu_decides_from_the_cpu_and_the_work_per_clip(monkeypatch, native, amx, gmacs, expected):
    _cpu(monkeypatch, native, amx)
    assert P.resolve_precision("auto", "cpu", gmacs_per_clip=gmacs) == expected
    assert P.Precision.resolve("auto", "cpu", gmacs_per_clip=gmacs).name == expected
    assert P.resolve_precision("fp32", "cpu", gmacs_per_clip=gmacs) == "fp32"  # explicit values stay
    precision, reason = P.explain_auto_precision("cpu", gmacs)
    assert precision == expected and reason and "\n" not in reason


def test_clip_gmacs_counts_the_configured_model_at_the_data_size():
    from videoattn.engine.builders import auto_precision_work, clip_gmacs

    model = config_from_dict({"model": {"name": "r2d18", "num_frames": 8}}).model
    gmacs = clip_gmacs(model, 112)
    assert 3.0 < gmacs < 5.0  # R2D-18, 8 x 112 x 112: 3.88 GMACs (benchmarks/results/cpu_auto.json: 7.76 per 2 clips)
    small = config_from_dict({"model": {"name": "r2d18", "num_frames": 8, "options": {"base_channels": 16}}}).model
    assert clip_gmacs(small, 32) < 0.05
    assert clip_gmacs(model, 16) is None  # under 32 px it cannot be counted: auto then stays fp32
    assert auto_precision_work(model, "fp32", 112, "cpu") is None  # only auto on a CPU needs the count
    assert auto_precision_work(model, "auto", 112, "cuda") is None
    assert auto_precision_work(model, "auto", 112, "cpu") == pytest.approx(gmacs)


def test_test_and_predict_resolve_auto_alike(monkeypatch):
    """``eval.precision`` unset and ``train.precision: auto``: test and predict score a model with the same
    precision (decided from the model's work per clip, not from their different batch sizes)."""
    from videoattn.engine.evaluation import scoring_precision

    _cpu(monkeypatch, True, False)
    big = config_from_dict({"model": {"name": "r2d18", "num_frames": 8}, "data": {"size": 112}})
    small = config_from_dict({"model": {"name": "r2d18", "num_frames": 8, "options": {"base_channels": 16}},
                              "data": {"size": 32}})
    assert scoring_precision(big, big.model, torch.device("cpu")) == "bf16"
    assert scoring_precision(small, small.model, torch.device("cpu")) == "fp32"
    pinned = config_from_dict({"model": {"name": "r2d18"}, "data": {"size": 112}, "eval": {"precision": "fp32"}})
    assert scoring_precision(pinned, pinned.model, torch.device("cpu")) == "fp32"
