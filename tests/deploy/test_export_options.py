"""``videoattn export`` options and failures (issue 31 items 5, 10 and "Smaller"; issue 30
"Deployment"): resize follows --size, the model's own error first, shapes compared, --frames 0
refused, the averaging named right, missing packages named with the extra to install, and exported
files written with the permissions of every other output."""

from __future__ import annotations

import os
import stat
import sys

import pytest
import torch

from tests.deploy.test_export import FRAMES, SIZE, _small_model
from videoattn.cli import main
from videoattn.config import load_config
from videoattn.deploy.export import ExportError, export_metadata, export_model, export_module, load_exported_metadata


@pytest.mark.parametrize(("scale", "size", "given", "expected"), [
    (37, 48, None, 56),            # 48 * 37 / 32 = 55.5: the config's ratio of resize to crop is kept
    (37, 32, None, 37),            # the config's own size: its own scale
    ([40, 48], 48, None, [60, 72]),
    (37, 48, 50, 50),              # --scale-size given: used as is
    (None, 112, None, 128),        # no scale_size in the config: 256/224 of the crop, as the data pipeline
])
def test_export_scale_size_follows_size(trained, tmp_path, scale, size, given, expected):
    config_path, checkpoint, _ = trained
    config = load_config(config_path, [f"data.scale_size={scale if scale is not None else 'null'}"])
    out = tmp_path / "model.pt"
    extra = {} if given is None else {"scale_size": given}
    info = export_model(config, checkpoint, "torchscript", out, size=size, check=False, **extra)
    meta = load_exported_metadata(out)
    assert meta == info["metadata"]
    assert (meta["size"], meta["scale_size"], meta["input_shape"][-2:]) == (size, expected, [size, size])


def test_export_cli_size_and_scale_size(trained, tmp_path, capsys):
    config_path, checkpoint, _ = trained
    out = tmp_path / "model.pt"
    assert main(["export", "--config", str(config_path), "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(out), "--size", "40", "--scale-size", "48x64", "--set", "data.scale_size=37"]) == 0
    meta = load_exported_metadata(out)
    assert (meta["size"], meta["scale_size"]) == (40, [48, 64])
    assert main(["export", "--config", str(config_path), "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(out), "--size", "40", "--scale-size", "30"]) == 2
    assert "smaller than the crop --size 40" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--frames", "--size"])
def test_export_zero_frames_or_size_is_an_error(trained, tmp_path, capsys, flag):
    config_path, checkpoint, _ = trained
    out = tmp_path / "model.pt"
    assert main(["export", "--config", str(config_path), "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--out", str(out), flag, "0"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} must be a positive whole number, got 0" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_reports_the_models_own_error_at_that_size(tmp_path):
    model = _small_model("r2d18+bat")  # BAT with s=2 at res4: 48 px gives a 3x3 map there
    with pytest.raises(ExportError) as caught:
        export_module(model, "onnx", tmp_path / "model.onnx", {"model": "r2d18+bat", "num_frames": FRAMES, "size": 48})
    message = str(caught.value)
    assert "\n" not in message and "does not run on clips of 4 frames of 48x48" in message
    assert "must divide" in message and "trunk" not in message
    assert not list(tmp_path.iterdir())


class _ConstantRows(torch.nn.Module):
    """Logits that do not depend on the clip; traced, it forgets the batch (a (1, K) output)."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.arange(3.0))

    def forward(self, x):
        if torch.jit.is_tracing():
            return self.bias.unsqueeze(0) + 0 * x.sum()
        return self.bias.expand(x.shape[0], 3)


def test_export_parity_check_compares_shapes_first(tmp_path):
    out = tmp_path / "model.pt"
    with pytest.raises(ExportError, match=r"logits of shape \(1, 3\) for a batch of 3, PyTorch \(3, 3\)"):
        export_module(_ConstantRows(), "torchscript", out, {"model": "constant", "num_frames": 2, "size": 8})
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("average", ["prob", "logits"])
def test_export_metadata_names_the_averaging(trained, average):
    from videoattn.config import ModelConfig

    config = load_config(trained[0], [f"eval.average={average}"])
    meta = export_metadata(config, ModelConfig(name="r2d18"), ["a"], 4, 32, True, "onnx")
    assert meta["average"] == average
    assert f"averages the views' {'softmax' if average == 'prob' else 'logits'}" in meta["output"]


@pytest.mark.parametrize("module", ["onnx", "onnxruntime"])
def test_missing_onnx_package_names_the_extra_before_any_work(trained, tmp_path, monkeypatch, capsys, module):
    config_path, checkpoint, _ = trained
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the packages were checked")

    monkeypatch.setattr("videoattn.engine.evaluation.load_model_for", no_model)
    out = tmp_path / "model.onnx"
    assert main(["export", "--config", str(config_path), "--checkpoint", str(checkpoint), "--format", "onnx",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"needs {module}, which is not installed" in err
    assert "pip install 'videoattn[onnx]'" in err and "bash scripts/run.sh install onnx" in err
    with pytest.raises(ExportError, match=r"videoattn\[onnx\]"):
        export_module(_small_model("r2d18"), "onnx", out, {"model": "r2d18", "num_frames": FRAMES, "size": SIZE})
    assert not out.exists()


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_permissions_of_new_files(trained, tmp_path, umask, mask, mode):
    from videoattn.utils.io import atomic_write_json

    umask(mask)
    config_path, checkpoint, _ = trained
    exported = tmp_path / "model.pt"
    export_model(load_config(config_path), checkpoint, "torchscript", exported, check=False)
    atomic_write_json(tmp_path / "out.json", {"a": 1})
    for path in (exported, tmp_path / "out.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))


def test_current_umask_reads_without_changing_it(umask):
    from videoattn.utils.io import current_umask

    umask(0o027)
    assert current_umask() == 0o027 and current_umask() == 0o027
    assert os.umask(0o022) == 0o027
