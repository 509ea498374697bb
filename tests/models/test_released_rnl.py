"""tsm50 / tsm50_nl load the TSM repository's checkpoint layout, tsm50_rnl / tsm50_se_rnl the RNL
release's. The files are written here from the releases' key names and shapes (module.base_model.*,
conv1.net, layerX.i.block / layerX.i.nl, new_fc; RNL's dense masked penta kernel)."""

from __future__ import annotations

import pytest
import torch

from videoattn.errors import CheckpointError
from videoattn.models import create_model, load_weights

NL_NAMES = {"theta": "theta", "phi": "phi.0", "g": "g.0", "out_proj": "W.0", "out_norm": "W.1"}
RNL_NAMES = {"theta": "theta", "out_proj": "W.0", "out_norm": "W.1"}
WRAPPED = {"layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"}  # NL3DWrapper units


def _small(name):
    return create_model(name, num_classes=5, num_frames=4, base_channels=16).eval()


def _randomized(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def _released_state(model, block_names, leak=0.0):
    """Our state dict written under the release's names."""
    state = {}
    with_blocks = any("after_block" in k for k in model.state_dict())
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            state["module.new_fc." + key[3:]] = value
            continue
        key = key.removeprefix("backbone.")
        parts = key.split(".")
        unit = ".".join(parts[:2])
        if "after_block" in parts:
            rest = parts[parts.index("after_block") + 1:]
            if rest[0] == "blocks":  # chain: SE then RNL; the release has no SE of eq. 10-12
                if rest[1] == "0":
                    continue
                rest = rest[2:]
            module, leaf = rest[0], rest[-1]
            if module == "region":
                width = value.shape[0]
                per_group = width // max(width // 32, 1)
                dense = torch.zeros(width, per_group, *value.shape[2:])
                mask = torch.zeros_like(dense)
                rows = torch.arange(width)
                dense[rows, rows % per_group] = value[:, 0]
                mask[rows, rows % per_group] = 1
                dense[0, 1 % per_group] += leak  # a masked-out entry
                state[f"module.base_model.{unit}.nl.penta.weight"] = dense
                state[f"module.base_model.{unit}.nl.penta.mask"] = mask
                continue
            state[f"module.base_model.{unit}.nl.{block_names[module]}.{leaf}"] = value
            continue
        if len(parts) > 2 and parts[2] == "conv1":
            key = key.replace(".conv1.", ".conv1.net.")
        if unit in WRAPPED and with_blocks:  # NL3DWrapper: the unit is its .block
            key = key.replace(unit + ".", unit + ".block.", 1)
        state["module.base_model." + key] = value
    return {"state_dict": state}


@pytest.mark.parametrize("name,layout,names", [
    ("tsm50", "tsm", NL_NAMES), ("tsm50_nl", "tsm", NL_NAMES), ("tsm50_rnl", "rnl", RNL_NAMES),
])
def test_released_layout_round_trip(tmp_path, name, layout, names):
    source = _randomized(_small(name))
    path = tmp_path / "release.pth.tar"
    torch.save(_released_state(source, names), path)
    target = _small(name)
    report = load_weights(target, path, layout, strict=True)
    assert report.missing == [] and report.unexpected == []
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source(clip))


def test_se_rnl_loads_the_rnl_blocks_and_reports_the_se_it_lacks(tmp_path):
    source = _randomized(_small("tsm50_se_rnl"))
    path = tmp_path / "release.pth.tar"
    torch.save(_released_state(source, RNL_NAMES), path)
    report = load_weights(_small("tsm50_se_rnl"), path, "rnl")
    assert report.unexpected == []
    assert report.missing and all(".blocks.0." in k for k in report.missing)
    assert any(k.endswith("blocks.1.region.weight") for k in report.loaded)


def test_rnl_layout_refuses_nonzero_masked_out_weights_and_reports_the_channel_gate(tmp_path):
    source = _randomized(_small("tsm50_rnl"))
    path = tmp_path / "leaky.pth.tar"
    torch.save(_released_state(source, RNL_NAMES, leak=0.5), path)
    with pytest.raises(CheckpointError, match=r"layer2\.0\.nl\.penta\.weight has non-zero masked-out entries"):
        load_weights(_small("tsm50_rnl"), path, "rnl")
    state = _released_state(source, RNL_NAMES)["state_dict"]
    state["module.base_model.layer2.0.cg.W_k.weight"] = torch.zeros(1, 128, 1, 1, 1)
    torch.save(state, path)
    report = load_weights(_small("tsm50_rnl"), path, "rnl")
    assert report.unexpected == ["layer2.0.cg.W_k.weight"] and report.missing == []
