"""``model.compile`` (torch.compile through the engine), ``model.channels_last: auto``, and graph breaks.

Compiling with inductor on this CPU takes ~35 s for a tiny R2D-18; the engine tests use
``model.compile_backend: aot_eager``, which traces forward and backward through dynamo and AOTAutograd
(where graph breaks and tracing errors show) without generating kernels.
"""

from pathlib import Path

import pytest
import torch

import videoattn
from tests.engine.conftest import tiny_config_dict
from videoattn.config import config_from_dict
from videoattn.engine.builders import build_model, resolve_channels_last
from videoattn.errors import ConfigError


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    from videoattn.data import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(root, num_videos=24, frames=8, size=32, seed=0)
    return root


def _config(root: Path, work_dir: Path, **model):
    data = tiny_config_dict(root, work_dir, model=model, train={"epochs": 1, "val_interval": 0})
    return config_from_dict(data)


# --- model.compile ----------------------------------------------------------------------------------


def test_config_rejects_unknown_compile_backend_and_bad_channels_last():
    with pytest.raises(ConfigError, match=r"model.compile_backend.*'nope'.*inductor"):
        config_from_dict({"model": {"name": "r2d18", "compile": True, "compile_backend": "nope"}})
    with pytest.raises(ConfigError, match=r"model.channels_last"):
        config_from_dict({"model": {"name": "r2d18", "channels_last": "sometimes"}})
    config = config_from_dict({"model": {"name": "r2d18", "channels_last": "auto", "compile": True,
                                         "compile_backend": "aot_eager"}})
    assert config.model.channels_last == "auto" and config.model.compile is True
    assert config_from_dict({"model": {"name": "r2d18"}}).model.compile is False


def test_compiled_run_trains_and_its_checkpoint_loads_into_an_uncompiled_model(synthetic_root, tmp_path):
    from torch._dynamo.utils import counters

    from videoattn.engine import evaluate, train
    from videoattn.engine.checkpoint import load_checkpoint

    torch._dynamo.reset()
    counters.clear()
    config = _config(synthetic_root, tmp_path / "run", name="r2d18", num_frames=4, dropout=0.5, compile=True,
                     compile_backend="aot_eager", options={"variant": "tsm", "base_channels": 8})
    result = train(config)
    assert result.global_step >= 2
    assert counters["stats"]["unique_graphs"] >= 1, "the engine did not run the model through torch.compile"
    assert counters["graph_break"] == {}, dict(counters["graph_break"])

    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not any("_orig_mod" in key for key in state["model"])
    uncompiled = config_from_dict({"model": {**tiny_config_dict(synthetic_root, tmp_path)["model"],
                                             "compile": False}}).model
    model = build_model(uncompiled, num_classes=state["num_classes"], pretrained=False)
    assert not getattr(model, "_compiled_call_impl", None)
    missing, unexpected = model.load_state_dict(state["model"], strict=True)
    assert not missing and not unexpected
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][key], rtol=0, atol=0)

    # test with the compiled configuration (the checkpoint's model section says compile: true)
    metrics = evaluate(config, str(tmp_path / "run" / "last.pt"))
    assert metrics["num_videos"] > 0 and 0.0 <= metrics["top1"] <= 100.0

    # export traces the model: it gets the uncompiled module (tracing refuses a dynamo-compiled forward)
    from videoattn.deploy.export import export_model

    exported = export_model(config, tmp_path / "run" / "last.pt", "torchscript", tmp_path / "model.pt")
    assert Path(exported["path"]).is_file() and exported["max_abs_diff"] < 1e-4


def test_build_model_compiles_in_place_with_the_same_keys_and_outputs():
    config = config_from_dict({"model": {"name": "r2d18", "num_frames": 4, "compile": True, "compile_backend": "eager",
                                         "options": {"base_channels": 8}}})
    torch.manual_seed(0)
    compiled = build_model(config.model, num_classes=3, pretrained=False).eval()
    torch.manual_seed(0)
    plain = build_model(config.model, num_classes=3, pretrained=False, compile=False).eval()
    assert type(compiled) is type(plain) and compiled._compiled_call_impl is not None
    assert getattr(plain, "_compiled_call_impl", None) is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
    clips = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(clips), plain(clips), rtol=0, atol=0)


# --- model.channels_last: auto ----------------------------------------------------------------------


def _cpu_capability(monkeypatch, capability: str) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)


def test_channels_last_auto_rule(monkeypatch):
    _cpu_capability(monkeypatch, "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_channels_last("auto") is True
    assert resolve_channels_last("auto", "cpu") is False  # the device, when known, decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_channels_last("auto") is False
    assert resolve_channels_last("auto", "cuda:0") is True
    _cpu_capability(monkeypatch, "AVX512")  # measured faster there (benchmarks/results/cpu_auto.json)
    assert resolve_channels_last("auto") is True and resolve_channels_last("auto", "cpu") is True
    assert resolve_channels_last("auto", "mps") is False  # no rule: as given
    assert resolve_channels_last(True) is True and resolve_channels_last(False, "cuda") is False
    assert resolve_channels_last(False, "cpu") is False
    with pytest.raises(ConfigError, match="model.channels_last"):
        resolve_channels_last("yes")


def test_channels_last_defaults_to_auto():
    assert config_from_dict({}).model.channels_last == "auto"
    assert config_from_dict({}).train.precision == "auto"


def test_build_model_channels_last_auto_follows_the_device(monkeypatch, caplog):
    config = config_from_dict({"model": {"name": "r2d18", "num_frames": 4, "channels_last": "auto",
                                         "options": {"base_channels": 8}}})
    weight = lambda model: model.backbone.layer1[0].conv1.weight  # noqa: E731
    _cpu_capability(monkeypatch, "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level("INFO", logger="videoattn.engine.builders"):
        model = build_model(config.model, num_classes=3, pretrained=False)
    assert weight(model).is_contiguous(memory_format=torch.channels_last)
    assert "model.channels_last: auto -> true (CUDA)" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = build_model(config.model, num_classes=3, pretrained=False)
    assert not weight(model).is_contiguous(memory_format=torch.channels_last)
    _cpu_capability(monkeypatch, "AVX512")
    model = build_model(config.model, num_classes=3, pretrained=False)
    assert weight(model).is_contiguous(memory_format=torch.channels_last)


def test_run_start_message_names_the_resolved_layout(synthetic_root, tmp_path, monkeypatch, capsys):
    """A CPU run with ``auto`` on a machine that has CUDA follows the CPU's rule (the run's device
    decides) and says so, with its precision and the reasons, in the start message and metadata.json."""
    import json

    from videoattn.engine import train
    from videoattn.engine.builders import run_layout

    _cpu_capability(monkeypatch, "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = tiny_config_dict(synthetic_root, tmp_path)["model"]
    config = config_from_dict(tiny_config_dict(synthetic_root, tmp_path / "run",
                                               model={**model, "channels_last": "auto"},
                                               train={"epochs": 1, "val_interval": 0, "progress": True,
                                                      "precision": "auto"},
                                               data={"pin_memory": False}))
    train(config)
    err = capsys.readouterr().err
    assert "on 1 x cpu (fp32 (auto), NCHW (auto)); starting" in err
    assert "auto settings: train.precision -> fp32: " in err
    assert "model.channels_last -> false: AVX2 CPU, not measured faster" in err
    run = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert run["precision"] == "fp32" and run["channels_last"] is False
    assert set(run["auto_choices"]) == {"train.precision", "model.channels_last"}
    compiled = config_from_dict({"model": {"name": "r2d18", "channels_last": True, "compile": True}}).model
    assert run_layout(compiled, "bf16", "cuda") == "bf16, channels-last, compiled (inductor)"
    assert run_layout(compiled, "bf16", "cuda", "auto") == "bf16 (auto), channels-last, compiled (inductor)"


@pytest.mark.parametrize("capability, same_as", [("AVX2", False), ("AVX512", True)])
def test_default_cpu_run_is_bit_identical_to_its_rule(synthetic_root, tmp_path, monkeypatch, capability, same_as):
    """The default on a CPU trains exactly as the setting its rule names: NCHW on AVX2, channels-last on
    AVX-512 (and the tiny model stays fp32 under ``train.precision: auto``)."""
    from videoattn.engine import train
    from videoattn.engine.checkpoint import load_checkpoint

    _cpu_capability(monkeypatch, capability)
    model = tiny_config_dict(synthetic_root, tmp_path)["model"]
    model.pop("channels_last", None)
    default = train(_config(synthetic_root, tmp_path / "default", **model))
    explicit = train(_config(synthetic_root, tmp_path / "explicit", **model, channels_last=same_as))
    assert default.global_step == explicit.global_step >= 1
    a = load_checkpoint(tmp_path / "default" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "explicit" / "last.pt")["model"]
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- graph breaks -----------------------------------------------------------------------------------

#: Each registered block kind where its paper puts it, in a tiny R2D-18 (one site, res3 unit 1).
BLOCK_SITES = {
    "nl": ("after_block", {}), "dnl": ("after_block", {}), "tape": ("after_block", {}),
    "gta": ("after_block", {}), "rnl": ("after_block", {}), "bat": ("after_block", {"s": 4}),
    "bat3d": ("after_block", {"s": 4}), "gsm": ("before_conv1", {}), "sa_gsm": ("before_conv1", {}),
    "rsa": ("replace_conv2", {}), "se": ("before_residual", {}), "cbam": ("before_residual", {}),
    "gc": ("before_residual", {}),
}


def _breaks(model: torch.nn.Module, clips: torch.Tensor) -> list[str]:
    """Every graph break of an eval-mode forward, as 'reason @ file:line' of the innermost frames."""
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model.eval())(clips)
    torch._dynamo.reset()
    found = []
    for reason in explained.break_reasons:
        where = ", ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reason.user_stack[-3:])
        found.append(f"{reason.reason.splitlines()[0][:200]} @ {where}")
    assert len(found) == explained.graph_break_count
    return found


def test_graph_break_helper_sees_a_break():
    class Breaks(torch.nn.Module):
        def forward(self, x):
            x = x + 1
            torch._dynamo.graph_break()
            return x * 2

    breaks = _breaks(Breaks(), torch.randn(2))
    assert len(breaks) == 1 and "test_compile.py" in breaks[0]


@pytest.mark.parametrize("name", sorted(BLOCK_SITES))
def test_no_graph_break_in_a_block(name):
    position, options = BLOCK_SITES[name]
    insertion = {"name": name, "plan": "res3: 1", "position": position, "options": options}
    if position == "replace_conv2":
        insertion["from_scratch"] = True
    model = videoattn.create_model("r2d18", num_classes=5, num_frames=4, base_channels=16, pretrained=None,
                                   blocks=[insertion])
    assert any(module.__module__.startswith("videoattn.blocks") for module in model.modules())
    breaks = _breaks(model, torch.randn(1, 3, 4, 64, 64))
    assert not breaks, f"{name}: {len(breaks)} graph break(s): " + "; ".join(breaks)


@pytest.mark.parametrize("name", ["bninception_sagsm", "slowfast50_gta", "tsn50_rsa", "tsm50_rnl"])
def test_no_graph_break_in_other_preset_families(name):
    model = videoattn.create_model(name, num_classes=5, num_frames=8, base_channels=8, pretrained=None)
    breaks = _breaks(model, torch.randn(1, 3, 8, 64, 64))
    assert not breaks, f"{name}: {len(breaks)} graph break(s): " + "; ".join(breaks)


@pytest.mark.slow
@pytest.mark.parametrize("name", videoattn.list_models())
def test_no_graph_break_in_any_preset(name):
    """Every preset (stem width 16, 64 px; BAT with s = 2): no graph break anywhere in the model.
    About 2.5 minutes in all on one thread (measured 0.4-7.3 s per preset), hence ``slow``."""
    from videoattn.models import get_preset

    options = {"base_channels": 16, **({"block_options": {"s": 2}} if "bat" in name else {})}
    image = get_preset(name).input_kind == "image"
    model = videoattn.create_model(name, num_classes=5, num_frames=None if image else 8, pretrained=None, **options)
    clips = torch.randn(1, 3, 64, 64) if image else torch.randn(1, 3, 8, 64, 64)
    breaks = _breaks(model, clips)
    assert not breaks, f"{name}: {len(breaks)} graph break(s): " + "; ".join(breaks)
