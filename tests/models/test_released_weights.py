"""Whole-model checkpoints in released layouts: the key-map registry and its load report."""

import pytest
import torch

from videoattn.config import config_from_dict
from videoattn.engine.builders import build_model
from videoattn.errors import CheckpointError, UnknownNameError
from videoattn.models import create_model, load_weights, register_layout
from videoattn.models.released import _LAYOUTS


@pytest.fixture
def prefixed_layout():
    """A made-up release that stores everything under 'net.' and calls the classifier 'head'."""

    @register_layout("_test_release", "test layout")
    def convert(state, model):
        return {k.removeprefix("net.").replace("head.", "fc."): v for k, v in state.items()}

    yield "_test_release"
    del _LAYOUTS["_test_release"]


def _model(**kw):
    return create_model("r2d18_sa", num_classes=5, num_frames=2, base_channels=8, **kw).eval()


def _released_file(tmp_path, model):
    state = {("net." + k).replace("fc.", "head."): v for k, v in model.state_dict().items()}
    path = tmp_path / "release.pth"
    torch.save({"state_dict": state}, path)
    return path


def test_released_layout_loads_every_tensor_by_its_key_map(tmp_path, prefixed_layout):
    source = _model()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = _released_file(tmp_path, source)
    loaded = _model(weights=str(path), weights_layout=prefixed_layout)
    clip = torch.randn(1, 3, 2, 32, 32)
    torch.testing.assert_close(loaded(clip), source(clip))
    report = load_weights(_model(), path, prefixed_layout, strict=True)
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == len(source.state_dict())


def test_released_layout_mismatches_are_named(tmp_path, prefixed_layout):
    path = _released_file(tmp_path, create_model("r2d18_sa", num_classes=7, num_frames=2, base_channels=8))
    with pytest.raises(CheckpointError, match=r"'fc.weight' has shape \(7, 64\) but the model expects \(5, 64\)"):
        load_weights(_model(), path, prefixed_layout)
    partial = tmp_path / "partial.pth"
    state = torch.load(path)["state_dict"]
    torch.save({k: v for k, v in state.items() if "after_block" not in k and "head" not in k}, partial)
    report = load_weights(_model(), partial, prefixed_layout)
    assert report.missing and all("after_block" in k or k.startswith("fc.") for k in report.missing)
    with pytest.raises(CheckpointError, match="does not match the model exactly"):
        load_weights(_model(), partial, prefixed_layout, strict=True)
    with pytest.raises(UnknownNameError, match="checkpoint layout"):
        load_weights(_model(), path, "no_such_layout")
    with pytest.raises(CheckpointError, match=r"model weights file not found: .*absent.pth \(_test_release layout"):
        load_weights(_model(), tmp_path / "absent.pth", prefixed_layout)


def test_config_weights_keys_reach_the_model(tmp_path, prefixed_layout):
    source = _model()
    path = _released_file(tmp_path, source)
    config = config_from_dict({"model": {"name": "r2d18_sa", "num_frames": 2, "dropout": 0.0,
                                         "weights": str(path), "weights_layout": prefixed_layout,
                                         "options": {"base_channels": 8}}})
    model = build_model(config.model, 5).eval()
    torch.testing.assert_close(model.fc.weight, source.fc.weight)
