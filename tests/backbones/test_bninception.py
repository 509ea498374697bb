"""BN-Inception: parameter names and shapes of the released TSN/TRN/GSM ImageNet checkpoint, loading a
file written in that layout, insertion sites, input convention, and the GSM/SA-GSM count rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoattn.analysis.complexity import profile_model
from videoattn.backbones import BNInception, load_pretrained
from videoattn.errors import ConfigError, ShapeError
from videoattn.models import create_model

# Every convolution of the released model (bn_inception.yaml of TSN / GSM): name, in, out, kernel.
# Written out by hand from the release, independently of the backbone's own width table.
_STEM = [("conv1_7x7_s2", 3, 64, 7), ("conv2_3x3_reduce", 64, 64, 1), ("conv2_3x3", 64, 192, 3)]
_MODULES = {  # name: in, 1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3, pool_proj (0: none)
    "3a": (192, 64, 64, 64, 64, 96, 32), "3b": (256, 64, 64, 96, 64, 96, 64),
    "3c": (320, 0, 128, 160, 64, 96, 0), "4a": (576, 224, 64, 96, 96, 128, 128),
    "4b": (576, 192, 96, 128, 96, 128, 128), "4c": (576, 160, 128, 160, 128, 160, 128),
    "4d": (608, 96, 128, 192, 160, 192, 128), "4e": (608, 0, 128, 192, 192, 256, 0),
    "5a": (1056, 352, 192, 320, 160, 224, 128), "5b": (1024, 352, 192, 320, 192, 224, 128),
}


def released_convs():
    convs = list(_STEM)
    for name, (cin, c1, c3r, c3, cdr, cd, cp) in _MODULES.items():
        prefix = f"inception_{name}_"
        if c1:
            convs.append((prefix + "1x1", cin, c1, 1))
        convs += [(prefix + "3x3_reduce", cin, c3r, 1), (prefix + "3x3", c3r, c3, 3),
                  (prefix + "double_3x3_reduce", cin, cdr, 1), (prefix + "double_3x3_1", cdr, cd, 3),
                  (prefix + "double_3x3_2", cd, cd, 3)]
        if cp:
            convs.append((prefix + "pool_proj", cin, cp, 1))
    return convs


def released_state(seed=0):
    """A state dict in the released layout: flat names, biased convolutions, BN tensors stored as
    (1, C), a 1000-class ``fc``."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, cin, cout, k in released_convs():
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen)
        state[f"{name}.bias"] = torch.randn(cout, generator=gen)
        state[f"{name}_bn.weight"] = torch.rand(1, cout, generator=gen) + 0.5
        state[f"{name}_bn.bias"] = torch.randn(1, cout, generator=gen)
        state[f"{name}_bn.running_mean"] = torch.randn(1, cout, generator=gen)
        state[f"{name}_bn.running_var"] = torch.rand(1, cout, generator=gen) + 0.5
    state["fc.weight"] = torch.randn(1000, 1024, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


def test_parameter_count_equals_the_released_model():
    released = sum(v.numel() for k, v in released_state().items() if not k.startswith("fc.")
                   and not k.endswith(("running_mean", "running_var")))
    assert released == 10_270_240  # + the 1000-class fc: 11,295,240 (BN-Inception's usual 11.3 M)
    assert sum(p.numel() for p in BNInception().parameters()) == released


def test_released_checkpoint_loads_every_tensor(tmp_path):
    state = released_state()
    path = tmp_path / "bn_inception.pth"
    torch.save(state, path)
    backbone = BNInception()
    report = load_pretrained(backbone, path)
    assert report.missing == [] and report.unexpected == [] and report.skipped_replaced == []
    assert sorted(report.ignored_head) == ["fc.bias", "fc.weight"]
    mine = backbone.state_dict()
    torch.testing.assert_close(mine["inception_4d.double_3x3_1_bn.running_var"],
                               state["inception_4d_double_3x3_1_bn.running_var"][0])
    torch.testing.assert_close(mine["conv1_7x7_s2.weight"], state["conv1_7x7_s2.weight"])
    torch.testing.assert_close(mine["inception_5b.pool_proj.bias"], state["inception_5b_pool_proj.bias"])


def test_gsm_model_loads_released_trunk_and_reports_blocks_as_new(tmp_path):
    path = tmp_path / "bn_inception.pth"
    # pretrainedmodels' variant of the layout: classifier named last_linear, wrapped in a dict
    state = released_state()
    state["last_linear.weight"], state["last_linear.bias"] = state.pop("fc.weight"), state.pop("fc.bias")
    torch.save({"state_dict": state}, path)
    model = create_model("bninception_gsm", num_frames=2)
    report = load_pretrained(model.backbone, path)
    assert report.missing == [] and report.unexpected == []
    assert len(report.new_blocks) == 10 * 6  # gate weight+bias, gate BN weight/bias/mean/var
    assert all(".before_1x1_bn." in key for key in report.new_blocks)
    # through the builder as well (create_model(pretrained=...))
    built = create_model("bninception_sagsm", num_frames=2, pretrained=str(path))
    torch.testing.assert_close(built.backbone.state_dict()["inception_3c.3x3_reduce.weight"],
                               state["inception_3c_3x3_reduce.weight"])


class _Probe(nn.Module):
    """Records the shape it sees (put at sites with ``set_site``, not registered as a block)."""

    def __init__(self, seen: list, zero: bool = False):
        super().__init__()
        self.seen, self.zero = seen, zero

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return x * 0 if self.zero else x


def test_sites_shapes_and_effect():
    backbone = BNInception()
    sites = [s for s in backbone.sites(3) if s.kind == "before_1x1_bn"]
    assert [s.in_channels for s in sites] == [64, 64, 128, 224, 192, 160, 96, 128, 352, 352]
    assert [s.in_channels for s in backbone.sites(3) if s.kind == "after_block"] == [
        256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    torch.manual_seed(0)
    x = torch.randn(1, 3, 3, 96, 96)
    plain = create_model("bninception", num_frames=3, base_channels=16).eval()
    expected = plain(x)
    seen: list = []
    for site in plain.backbone.sites(3):
        if site.kind == "before_1x1_bn":
            plain.backbone.set_site(site, _Probe(seen))
    torch.testing.assert_close(plain(x), expected)
    # 96 px: 3a-3c at 12, 4a-4e at 6, 5a/5b at 3; channels scaled by 16/64
    assert seen == [(1, c // 4, 3, s, s) for c, s in zip(
        [64, 64, 128, 224, 192, 160, 96, 128, 352, 352], [12, 12, 12, 6, 6, 6, 6, 6, 3, 3])]
    zeroed = create_model("bninception", num_frames=3, base_channels=16).eval()
    zeroed.load_state_dict(plain.state_dict())
    (site,) = [s for s in zeroed.backbone.sites(3) if s.name == "inception5.1.before_1x1_bn"]
    zeroed.backbone.set_site(site, _Probe([], zero=True))
    assert not torch.allclose(zeroed(x), expected)


def test_caffe_bgr_input_convention():
    """The released weights see BGR in [0, 255] minus (104, 117, 128)."""
    backbone = BNInception(base_channels=8).eval()
    seen = []
    backbone.conv1_7x7_s2.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    rgb01 = torch.rand(1, 3, 1, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    backbone((rgb01 - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1))
    expected = rgb01[:, [2, 1, 0], 0] * 255 - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected, rtol=1e-5, atol=1e-3)


def test_errors():
    with pytest.raises(ConfigError, match="base_channels"):
        BNInception(base_channels=7)
    with pytest.raises(ConfigError, match="input_convention"):
        BNInception(input_convention="rgb")
    with pytest.raises(ShapeError, match=r"\(N, 3, T, H, W\)"):
        BNInception(base_channels=8)(torch.randn(1, 3, 32, 32))
    with pytest.raises(ShapeError, match="multiples of 32"):
        BNInception(base_channels=8)(torch.randn(1, 3, 1, 40, 40))


# preset: (parameters, fvcore MACs) at 174 classes, 8 x 224 x 224; paper numbers (SA-GSM report
# sec. 5: "from 10.5 M to 11.0 M"), compared at the printed precision (+-0.05 M).
COUNTS = {
    "bninception": (10_448_590, 16_254_033_920, None),
    "bninception_gsm": (10_499_650, 16_338_705_920, 10.5e6),
    "bninception_sagsm": (11_015_140, 18_631_733_440, 11.0e6),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_count_rows(name):
    params, macs, paper = COUNTS[name]
    counted = profile_model(name, convention="fvcore")
    assert (counted.params, counted.macs) == (params, macs)
    if paper is not None:
        assert abs(counted.params - paper) <= 0.05e6


def test_partial_bn_keeps_the_first_bn_and_the_gsm_gates_training():
    from videoattn.engine.builders import frozen_bn_layers

    model = create_model("bninception_gsm", num_frames=2, base_channels=8)
    frozen = {id(m) for m in frozen_bn_layers(model, "partial")}
    assert id(model.backbone.conv1_7x7_s2_bn) not in frozen  # TSN's partial BN: the first one trains
    assert id(model.backbone.conv2_3x3_reduce_bn) in frozen and id(model.backbone.inception_5b.pool_proj_bn) in frozen
    assert id(model.backbone.inception_3a.before_1x1_bn.gate_bn) not in frozen
