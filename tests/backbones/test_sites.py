"""One test per kind of insertion site: where the block runs, what it sees, what loading does."""

import io

import pytest
import torch
import yaml
from torch import nn

from videoattn.backbones import ResNet, load_pretrained
from videoattn.blocks import create, register_block
from videoattn.blocks.registry import _BLOCKS
from videoattn.errors import ConfigError
from videoattn.models import build_recognizer, create_model


class _Affine(nn.Module):
    """y = scale * x + shift, recording the shapes it sees (a block whose effect is easy to predict)."""

    identity_at_init = False
    seen: list = []

    def __init__(self, channels, num_frames=None, scale=1.0, shift=0.0):
        super().__init__()
        self.channels, self.scale, self.shift = channels, scale, shift

    def forward(self, x):
        _Affine.seen.append(tuple(x.shape))
        return x * self.scale + self.shift


@pytest.fixture
def affine():
    register_block("_test_affine")(_Affine)
    _Affine.seen = []
    yield _Affine
    del _BLOCKS["_test_affine"]


def _small(blocks=(), depth=50, **kw):
    return build_recognizer(depth=depth, variant="r2d", num_classes=3, base_channels=8, num_frames=2, dropout=0.0,
                            blocks=list(blocks), **kw).eval()


def _same_weights(model, plain):
    """Copy ``model``'s trunk and head into ``plain`` (which has no inserted blocks)."""
    result = plain.load_state_dict(model.state_dict(), strict=False)
    assert not result.missing_keys
    return plain


def test_resnet_sites_have_the_channels_frames_and_strides_of_their_block():
    backbone = ResNet(50, "c2d", base_channels=8)
    sites = {s.name: s for s in backbone.sites(8)}
    assert len(sites) == 16 * 4
    res3_0 = [sites[f"res3.0.{kind}"] for kind in ("before_conv1", "replace_conv2", "before_residual", "after_block")]
    # res2 outputs 4 * 8 = 32 channels; res3's bottleneck width is 16, output 64; c2d halves T after res2
    assert [(s.in_channels, s.out_channels, s.stride, s.num_frames) for s in res3_0] == [
        (32, 32, 1, 4), (16, 16, 2, 4), (64, 64, 1, 4), (64, 64, 1, 4)]
    assert sites["res2.0.after_block"].num_frames == 8
    assert sites["res3.0.replace_conv2"].path == "layer2.0.conv2" and sites["res3.0.replace_conv2"].replaces
    assert sites["res3.1.replace_conv2"].stride == 1


def test_before_residual_runs_on_the_branch_before_the_addition(affine):
    # A block zeroing the residual branch leaves relu(identity) = relu(input) for a block without downsample
    # (and its input is already non-negative, so the block passes its input through).
    model = _small([{"name": "_test_affine", "plan": "res3: 1", "position": "before_residual",
                     "options": {"scale": 0.0}}])
    block = model.backbone.layer2[1]
    x = torch.relu(torch.randn(4, 64, 6, 6))
    torch.testing.assert_close(block(x, 2), x)
    assert affine.seen == [(2, 64, 2, 6, 6)]  # (N, C, T, H, W): the block's output width, the clip's T
    # The same block after the addition zeros the unit's output instead.
    after = _small([{"name": "_test_affine", "plan": "res3: 1", "options": {"scale": 0.0}}]).backbone.layer2[1]
    assert after(x, 2).abs().sum() == 0


def test_identity_at_init_blocks_change_nothing_at_every_insertion_site():
    clip = torch.randn(2, 3, 2, 48, 48)
    plain = _small()
    for position in ("before_conv1", "before_residual", "after_block"):
        model = _small([{"name": "sa", "plan": "res3: 0,1; res4: 1", "position": position}])
        torch.testing.assert_close(model(clip), _same_weights(model, plain)(clip))


def test_replace_conv2_runs_the_block_in_place_of_the_convolution_with_its_stride():
    model = _small([{"name": "conv", "plan": "res3: all", "position": "replace_conv2",
                     "options": {"kernel_size": [1, 3, 3]}}])
    assert type(model.backbone.layer2[0].conv2).__name__ == "ConvBlock"
    assert model.backbone.layer2[0].conv2.conv.stride == (1, 2, 2)  # block 0 carries the stage's stride
    assert model.backbone.layer2[1].conv2.conv.stride == (1, 1, 1)
    # With the 2D kernels copied in, the 1x3x3 convolution is the 3x3 it replaced: same network output.
    plain = _small()
    state = {k.replace("conv2.conv.", "conv2."): (v[:, :, 0] if k.endswith("conv2.conv.weight") else v)
             for k, v in model.state_dict().items()}
    plain.load_state_dict(state)
    clip = torch.randn(2, 3, 2, 48, 48)
    torch.testing.assert_close(model(clip), plain(clip))


def test_replace_conv2_refuses_a_block_that_cannot_match_the_stride():
    with pytest.raises(ConfigError, match=r"'sa' cannot replace the module at site res3.0.replace_conv2: .* "
                                          r"stride 2, and the block has no 'stride' option"):
        _small([{"name": "sa", "plan": "res3: 0", "position": "replace_conv2"}])
    _small([{"name": "sa", "plan": "res3: 1", "position": "replace_conv2"}])  # stride 1, C -> C: fine


def test_pretrained_load_skips_replaced_modules_and_from_scratch_units(tmp_path):
    image = create_model("resnet50", num_frames=None, base_channels=8)
    path = tmp_path / "resnet50.pth"
    torch.save(image.state_dict(), path)
    source = image.state_dict()

    model = _small([{"name": "conv", "plan": "res3: 1", "position": "replace_conv2"}])
    report = load_pretrained(model.backbone, path)
    assert report.skipped_replaced == ["layer2.1.conv2.weight"]
    assert report.missing == [] and report.unexpected == []
    assert report.new_blocks == ["layer2.1.conv2.conv.weight"]
    assert "skipped (module replaced or trained from scratch): layer2.1.conv2.weight" in report.summary()
    torch.testing.assert_close(model.backbone.layer2[1].conv1.weight, source["layer2.1.conv1.weight"])

    scratch = _small([{"name": "conv", "plan": "res3: 1", "position": "replace_conv2", "from_scratch": True}],
                     pretrained=str(path))
    unit = scratch.backbone.layer2[1]
    assert unit.bn3.weight.abs().sum() == 0  # the from-scratch unit starts as the identity mapping
    assert not torch.equal(unit.conv1.weight, source["layer2.1.conv1.weight"])  # and keeps its own init
    torch.testing.assert_close(scratch.backbone.layer2[0].conv1.weight, source["layer2.0.conv1.weight"])
    report = load_pretrained(scratch.backbone, path)
    assert sorted(report.skipped_replaced) == sorted(k for k in source if k.startswith("layer2.1."))


def test_chain_applies_its_blocks_in_order_in_one_site(affine):
    def chained(order):
        refs = [{"name": "_test_affine", "options": {"scale": 2.0}},
                {"name": "_test_affine", "options": {"shift": 1.0}}]
        return create("chain", 4, num_frames=2, blocks=[refs[i] for i in order])

    x = torch.randn(1, 4, 2, 3, 3)
    torch.testing.assert_close(chained([0, 1])(x), 2 * x + 1)
    torch.testing.assert_close(chained([1, 0])(x), 2 * (x + 1))
    with pytest.raises(ConfigError, match="non-empty list"):
        create("chain", 4, blocks=[])
    with pytest.raises(ConfigError, match="item 1: expected a block name or a mapping"):
        create("chain", 4, blocks=["sa", 3])


def test_chain_from_yaml_fills_one_site_with_two_blocks():
    config = yaml.safe_load("""
blocks:
  - name: chain
    plan: "res3: 1; res4: 1"
    options:
      blocks:
        - sa
        - {name: tape, options: {positional_init_std: 0.5}}
""")
    model = create_model("r2d18", num_classes=3, num_frames=4, base_channels=8, **config)
    chain = model.backbone.layer2[1].after_block
    assert [b.registered_block_name for b in chain.blocks] == ["sa", "tape"]
    assert chain.blocks[1].num_frames == 4 and chain.identity_at_init
    state = io.BytesIO()
    torch.save(model.state_dict(), state)
    assert "backbone.layer2.1.after_block.blocks.1.temporal.positional_embedding.embedding" in model.state_dict()
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)
