"""The ``gsm`` / ``sa_gsm`` released-checkpoint layouts (issue 27.5) on state dicts built from a
description of the authors' models: key names and shapes written here from the structure of
swathikirans/GSM (``bn_inception_gsm.yaml``, ``gsm.py``'s ``gsmModule``, ``models.py``'s TSN
``VideoModel``) and dpstart/SA-GSM (the same, plus ``Self_Attn`` inside its ``GSM``), saved as their
training scripts save them (``{"state_dict": DataParallel(model).state_dict()}``)."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.blocks.test_gsm import reference_gsm, reference_sagan
from videoattn.errors import CheckpointError
from videoattn.models import create_model, load_weights

# The released BN-Inception (bn_inception_gsm.yaml): per inception module the outputs of 1x1, 3x3_reduce,
# 3x3, double_3x3_reduce, double_3x3_1/_2 and pool_proj; 0 = absent (3c, 4e: stride-2 reduction modules
# whose max pool passes its input through).
RELEASED_MODULES = {
    "3a": (64, 64, 64, 64, 96, 32), "3b": (64, 64, 96, 64, 96, 64), "3c": (0, 128, 160, 64, 96, 0),
    "4a": (224, 64, 96, 96, 128, 128), "4b": (192, 96, 128, 96, 128, 128), "4c": (160, 128, 160, 128, 160, 128),
    "4d": (96, 128, 192, 160, 192, 128), "4e": (0, 128, 192, 192, 256, 0),
    "5a": (352, 192, 320, 160, 224, 128), "5b": (352, 192, 320, 192, 224, 128),
}


def released_state(num_classes: int, attention: bool, scale: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """``module.*`` keys and shapes of the authors' trained model, random values; ``scale`` shrinks every
    width by scale/64 as ``base_channels`` does (64: the release)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def w(n):
        return n * scale // 64

    def tensor(*shape):
        return torch.randn(*shape, generator=gen)

    def conv(name, cin, cout, k):  # Caffe-derived layers: every convolution has a bias
        state[f"module.base_model.{name}.weight"] = tensor(cout, cin, k, k)
        state[f"module.base_model.{name}.bias"] = tensor(cout)

    def bn(name, channels):
        for leaf in ("weight", "bias", "running_mean"):
            state[f"module.base_model.{name}.{leaf}"] = tensor(channels)
        state[f"module.base_model.{name}.running_var"] = torch.rand(channels, generator=gen) + 0.5
        state[f"module.base_model.{name}.num_batches_tracked"] = torch.tensor(100)

    def gsm(name, channels):  # gsmModule(fPlane): conv3D (groups 2, 2 outputs), bn (BatchNorm3d)
        state[f"module.base_model.{name}.conv3D.weight"] = 0.1 * tensor(2, channels // 2, 3, 3, 3)
        state[f"module.base_model.{name}.conv3D.bias"] = 0.1 * tensor(2)
        bn(f"{name}.bn", channels)
        if attention:  # Self_Attn(in_dim): Conv2d query/key C -> C//8, value C -> C, gamma
            for part, out in (("query_conv", channels // 8), ("key_conv", channels // 8), ("value_conv", channels)):
                state[f"module.base_model.{name}.attn.{part}.weight"] = 0.1 * tensor(out, channels, 1, 1)
                state[f"module.base_model.{name}.attn.{part}.bias"] = 0.1 * tensor(out)
            state[f"module.base_model.{name}.attn.gamma"] = tensor(1)

    conv("conv1_7x7_s2", 3, w(64), 7)
    bn("conv1_7x7_s2_bn", w(64))
    conv("conv2_3x3_reduce", w(64), w(64), 1)
    bn("conv2_3x3_reduce_bn", w(64))
    conv("conv2_3x3", w(64), w(192), 3)
    bn("conv2_3x3_bn", w(192))
    channels = w(192)
    for unit, widths in RELEASED_MODULES.items():
        c1, c3r, c3, cdr, cd, cp = (w(n) for n in widths)
        prefix = f"inception_{unit}"
        layers = [("1x1", channels, c1, 1)] if c1 else []
        layers += [("3x3_reduce", channels, c3r, 1), ("3x3", c3r, c3, 3), ("double_3x3_reduce", channels, cdr, 1),
                   ("double_3x3_1", cdr, cd, 3), ("double_3x3_2", cd, cd, 3)]
        if cp:
            layers.append(("pool_proj", channels, cp, 1))
        for name, cin, cout, k in layers:
            conv(f"{prefix}_{name}", cin, cout, k)
            bn(f"{prefix}_{name}_bn", cout)
        first = "1x1" if c1 else "3x3_reduce"
        gsm(f"gsm_{prefix}_{first}", c1 or c3r)
        channels = c1 + c3 + cd + (cp or channels)
    # base_model.fc became Dropout (no tensors); the classifier is VideoModel.new_fc
    state["module.new_fc.weight"] = 0.01 * tensor(num_classes, channels)
    state["module.new_fc.bias"] = tensor(num_classes)
    return state


def _save(tmp_path, state, name):
    path = tmp_path / name
    torch.save({"epoch": 30, "arch": "BNInception", "state_dict": state, "best_prec1": 47.2}, path)
    return path


def _block_site(model, unit):
    return model.backbone.get_submodule(f"inception_{unit}").before_1x1_bn


@pytest.mark.parametrize("layout, preset, scale", [("gsm", "bninception_gsm", 64), ("sa_gsm", "bninception_sagsm", 16)])
def test_released_model_loads_with_nothing_missing_or_unexpected(tmp_path, layout, preset, scale, caplog):
    state = released_state(num_classes=174, attention=layout == "sa_gsm", scale=scale)
    path = _save(tmp_path, state, f"{layout}.pth.tar")
    # a preset built with other options: the loader gives its blocks the release's
    options = {"gate_norm": False} if layout == "gsm" else {"gate_norm": False, "value": "paper"}
    model = create_model(preset, base_channels=scale, block_options=options)
    with caplog.at_level(logging.INFO, logger="videoattn.models.released_gsm"):
        report = load_weights(model, path, layout)
    assert report.missing == [] and report.unexpected == []
    assert len(report.loaded) == len(state)
    assert "released_order: False -> True" in caplog.text and "gate_norm: False -> True" in caplog.text
    for unit in RELEASED_MODULES:
        block = _block_site(model, unit)
        gsm = block if layout == "gsm" else block.gsm
        assert gsm.released_order and gsm.gate_bn is not None
        if layout == "sa_gsm":
            assert block.attention.value_form == "released" and block.attention.v is None
    first = "1x1"
    theirs = f"module.base_model.gsm_inception_4d_{first}"
    gsm = _block_site(model, "4d") if layout == "gsm" else _block_site(model, "4d").gsm
    torch.testing.assert_close(gsm.gate.weight, state[f"{theirs}.conv3D.weight"], rtol=0, atol=0)
    torch.testing.assert_close(gsm.gate_bn.running_var, state[f"{theirs}.bn.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(model.fc.weight, state["module.new_fc.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.inception_3c.get_submodule("3x3_reduce_bn").running_mean,
                               state["module.base_model.inception_3c_3x3_reduce_bn.running_mean"], rtol=0, atol=0)


def test_loaded_sa_gsm_module_computes_the_released_function(tmp_path):
    """One loaded module against the release's computation written from its code's structure: gate
    ReLU(BN(x)) -> conv3D -> tanh; first half shifted from the next frame, second from the previous;
    channels interleaved; then ``out_i = gamma sum_j softmax_j(q_i . k_j) v_j + x_i`` within each frame
    (``reference_sagan`` with f = key_conv, g = query_conv, h = value_conv)."""
    state = released_state(num_classes=10, attention=True, scale=16)
    model = create_model("bninception_sagsm", num_classes=10, base_channels=16)
    load_weights(model, _save(tmp_path, state, "sagsm.pth.tar"), "sa_gsm")
    block = _block_site(model, "3b").double().eval()
    theirs = {k.removeprefix("module.base_model.gsm_inception_3b_1x1."): v.double() for k, v in state.items()
              if k.startswith("module.base_model.gsm_inception_3b_1x1.")}
    channels = theirs["bn.weight"].shape[0]
    x = torch.randn(2, channels, 3, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    bn = (theirs["bn.running_mean"], theirs["bn.running_var"], theirs["bn.weight"], theirs["bn.bias"], 1e-5)
    shifted = reference_gsm(theirs["conv3D.weight"], theirs["conv3D.bias"], x, bn=bn, next_frame_first=True,
                            interleave=True)
    weights = {ours: (theirs[f"attn.{part}.weight"][:, :, 0, 0], theirs[f"attn.{part}.bias"])
               for ours, part in (("f", "key_conv"), ("g", "query_conv"), ("h", "value_conv"))}
    weights["gamma"] = theirs["attn.gamma"][0]
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_sagan(weights, shifted), rtol=1e-10, atol=1e-10)


def test_wrong_model_or_file_is_refused_with_one_line(tmp_path):
    sa_state = released_state(num_classes=174, attention=True, scale=16)
    path = _save(tmp_path, sa_state, "sagsm.pth.tar")
    with pytest.raises(CheckpointError, match="it is an SA-GSM model; load it into bninception_sagsm"):
        load_weights(create_model("bninception_gsm", base_channels=16), path, "gsm")
    with pytest.raises(CheckpointError, match="this model has 'gsm' blocks .*weights_layout 'gsm'"):
        load_weights(create_model("bninception_gsm", base_channels=16), path, "sa_gsm")
    with pytest.raises(CheckpointError, match="this model has no gate-shift blocks"):
        load_weights(create_model("bninception", base_channels=16), path, "sa_gsm")
    with pytest.raises(CheckpointError, match="maps BN-Inception models .*backbone is ResNet"):
        load_weights(create_model("r2d18", base_channels=16), path, "gsm")
