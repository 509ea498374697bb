"""SlowFast backbone: stage shapes of both pathways, laterals, temporal kernels as published, slow-pathway
sites, frame order, 2D ImageNet inflation and the PySlowFast checkpoint layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoattn.backbones import InsertionPlan
from videoattn.backbones.resnet import TemporalConv
from videoattn.backbones.slowfast import SlowFast
from videoattn.errors import ShapeError
from videoattn.models import create_model, load_weights
from videoattn.models.recognizer import build_image_classifier


def _small(**kw) -> SlowFast:
    torch.manual_seed(0)
    return SlowFast(depth=50, base_channels=16, **kw).eval()


def test_stage_shapes_of_both_pathways_and_laterals():
    # 16 fast frames, alpha 4 -> 4 slow frames; base 16 -> fast width 2 (beta_inv 8)
    model = _small(alpha=4)
    out = model.forward_pathways(torch.randn(1, 3, 16, 64, 64))
    expected = {
        "slow.stem": (1, 16, 4, 16, 16), "fast.stem": (1, 2, 16, 16, 16),
        "slow.res2": (1, 64, 4, 16, 16), "fast.res2": (1, 8, 16, 16, 16), "lateral.res2": (1, 16, 4, 16, 16),
        "slow.res3": (1, 128, 4, 8, 8), "fast.res3": (1, 16, 16, 8, 8), "lateral.res3": (1, 32, 4, 8, 8),
        "slow.res4": (1, 256, 4, 4, 4), "fast.res4": (1, 32, 16, 4, 4), "lateral.res4": (1, 64, 4, 4, 4),
        "slow.res5": (1, 512, 4, 2, 2), "fast.res5": (1, 64, 16, 2, 2),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    features, frames = model(torch.randn(2, 3, 4, 32, 32))
    assert tuple(features.shape) == (2, 512 + 64, 1, 1) and frames == 1 and model.out_channels == 576


def test_full_size_widths_laterals_and_temporal_kernels_as_published():
    with torch.device("meta"):
        model = SlowFast(depth=50, alpha=4, fusion_kernel=7)
    # laterals: fast channels 8, 32, 64, 128 -> 2x, kernel 7x1x1, time stride alpha
    for lateral, fast in zip(model.lateral, (8, 32, 64, 128)):
        assert tuple(lateral.conv.weight.shape) == (2 * fast, fast, 7, 1, 1)
        assert lateral.conv.stride == (4, 1, 1) and lateral.conv.padding == (3, 0, 0)
    # slow stage inputs carry the lateral channels: 64+16, 256+64, 512+128, 1024+256
    for stage, width in zip(("layer1", "layer2", "layer3", "layer4"), (80, 320, 640, 1280)):
        block = getattr(model.slow, stage)[0]
        assert block.conv1.in_channels == width and block.downsample[0].in_channels == width
    # temporal kernels: slow 1x7x7 stem, 1x1x1 conv1 in res2/res3, 3x1x1 in res4/res5; fast 5x7x7, 3x1x1 everywhere
    assert isinstance(model.slow.conv1, nn.Conv2d) and tuple(model.fast.conv1.weight.shape) == (8, 3, 5, 7, 7)
    for stage, slow_kt in zip(("layer1", "layer2", "layer3", "layer4"), (1, 1, 3, 3)):
        for block in getattr(model.slow, stage):
            assert (block.conv1.kernel_size[0] if isinstance(block.conv1, TemporalConv) else 1) == slow_kt
            assert isinstance(block.conv2, nn.Conv2d) and isinstance(block.conv3, nn.Conv2d)
        for block in getattr(model.fast, stage):
            assert isinstance(block.conv1, TemporalConv) and block.conv1.kernel_size == (3, 1, 1)
    assert [len(getattr(model.slow, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    with torch.device("meta"):
        assert [len(getattr(SlowFast(depth=101).fast, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]


def test_sites_are_the_slow_pathway_at_the_slow_frame_count():
    with torch.device("meta"):
        model = SlowFast(depth=50, alpha=4)
    sites = model.sites(64)
    assert len(sites) == 4 * 16 and all(s.path.startswith("slow.") and s.num_frames == 16 for s in sites)
    five = InsertionPlan.parse("five_block").select(model, 64)
    assert [s.path for s in five] == ["slow.layer2.1.after_block", "slow.layer2.3.after_block",
                                      "slow.layer3.1.after_block", "slow.layer3.3.after_block",
                                      "slow.layer3.5.after_block"]
    assert [s.in_channels for s in five] == [512, 512, 1024, 1024, 1024]


def test_gta_in_slowfast_is_built_for_the_slow_frames_and_clip_checks():
    model = create_model("slowfast50_gta", num_classes=3, num_frames=8, base_channels=16, alpha=2)
    gta = model.backbone.slow.layer2[1].after_block
    assert gta.num_frames == 4
    with pytest.raises(ShapeError, match="divisible by 2"):
        model(torch.randn(1, 3, 7, 32, 32))


def _open_gates(model):
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.fill_(0.5)


@pytest.mark.parametrize("name", ["slowfast50", "slowfast50_gta"])
def test_slowfast_sees_frame_order(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_frames=4, base_channels=8, alpha=2).eval()
    _open_gates(model)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(clip), model(clip.flip(2)), atol=1e-4)


def test_inserted_gta_makes_the_output_depend_on_order_beyond_the_backbone():
    """With the backbone's temporal kernels degenerate (all time taps but the centre zero and no
    laterals), SlowFast is per-frame and average-pooled: order-blind; the inserted GTA breaks that."""
    torch.manual_seed(0)
    outputs = {}
    for name in ("slowfast50", "slowfast50_gta"):
        torch.manual_seed(0)
        model = create_model(name, num_classes=3, num_frames=4, base_channels=8, alpha=1).eval()
        _open_gates(model)
        with torch.no_grad():
            for module in model.backbone.modules():
                if isinstance(module, TemporalConv) and module.kernel_size[0] > 1:
                    centre = module.weight[:, :, module.kernel_size[0] // 2].clone()
                    module.weight.zero_()
                    module.weight[:, :, module.kernel_size[0] // 2] = centre
            for lateral in model.backbone.lateral:
                lateral.bn.weight.zero_()
                lateral.bn.bias.zero_()
        clip = torch.randn(1, 3, 4, 32, 32)
        perm = torch.tensor([2, 0, 3, 1])
        with torch.no_grad():
            outputs[name] = (model(clip), model(clip[:, :, perm]))
    torch.testing.assert_close(*outputs["slowfast50"], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(*outputs["slowfast50_gta"], atol=1e-4)


def test_imagenet_2d_file_inflates_into_both_pathways(tmp_path):
    torch.manual_seed(1)
    source = build_image_classifier(depth=50, num_classes=10, base_channels=16).eval()
    with torch.no_grad():
        for name, buffer in source.named_buffers():
            if "running_var" in name:
                buffer.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                buffer.normal_()
        for p in source.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "resnet50_2d.pth"
    torch.save(source.state_dict(), path)
    model = create_model("slowfast50", num_classes=3, num_frames=8, base_channels=16, alpha=4,
                         temporal_padding="replicate", pretrained=str(path)).eval()
    sf, two_d = model.backbone, source.state_dict()
    # slow: zero weights on the lateral input channels; 3x1x1 kernels are the 2D kernel / 3 three times
    w = sf.slow.layer2[0].conv1.weight
    torch.testing.assert_close(w[:, :64], two_d["layer2.0.conv1.weight"])
    assert w.shape[1] == 80 and not w[:, 64:].any()
    w = sf.slow.layer3[0].conv1.weight
    assert w.shape == (64, 160, 3, 1, 1) and not w[:, 128:].any()
    torch.testing.assert_close(w[:, :128, 1], two_d["layer3.0.conv1.weight"] / 3)
    # fast: leading C/8 channels, inflated
    torch.testing.assert_close(sf.fast.conv1.weight, two_d["conv1.weight"][:2].unsqueeze(2).repeat(1, 1, 5, 1, 1) / 5)
    torch.testing.assert_close(sf.fast.layer1[0].bn1.running_var, two_d["layer1.0.bn1.running_var"][:2])
    # the slow pathway is the 2D network on a static clip (replicate padding; laterals read with zero weights)
    frame = torch.randn(1, 3, 64, 64)
    clip = frame.unsqueeze(2).repeat(1, 1, 8, 1, 1)
    with torch.no_grad():
        slow_feature = sf.forward_pathways(clip)["slow.res5"].mean(dim=(2, 3, 4))
        reference = source.forward_stages(frame, 1)[0].mean(dim=(2, 3))
    torch.testing.assert_close(slow_feature, reference, atol=1e-3, rtol=1e-3)


def test_imagenet_load_report_names_laterals_and_classifier(tmp_path, caplog):
    from videoattn.backbones import load_pretrained

    source = build_image_classifier(depth=50, num_classes=10, base_channels=16)
    path = tmp_path / "r50.pth"
    torch.save(source.state_dict(), path)
    backbone = SlowFast(depth=50, base_channels=16)
    report = load_pretrained(backbone, path)
    trunk = [k for k in source.state_dict() if not k.startswith("fc.")]
    assert len(report.loaded) == 2 * len(trunk)
    assert report.ignored_head == ["fc.weight", "fc.bias"]
    assert {k.split(".")[0] for k in report.missing} == {"lateral"} and not report.unexpected


def _pysf_state(depth: int, base: int, beta_inv: int, alpha: int, fusion_kernel: int, classes: int) -> dict:
    """A checkpoint in PySlowFast's layout, from its published names and shapes (every conv 5D)."""
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    slow_kt, fast_kt = (1, 1, 3, 3), (3, 3, 3, 3)
    fast_w = base // beta_inv
    fuse_in = (fast_w, fast_w * 4, fast_w * 8, fast_w * 16)
    gen = torch.Generator().manual_seed(3)
    state = {}

    def conv(key, shape):
        state[key + ".weight"] = torch.randn(shape, generator=gen) * 0.1

    def bn(key, c):
        state[key + ".weight"] = 1 + 0.1 * torch.randn(c, generator=gen)
        state[key + ".bias"] = 0.1 * torch.randn(c, generator=gen)
        state[key + ".running_mean"] = 0.1 * torch.randn(c, generator=gen)
        state[key + ".running_var"] = 1 + torch.rand(c, generator=gen)
        state[key + ".num_batches_tracked"] = torch.tensor(7)

    for p, (width, kt) in enumerate(((base, 1), (fast_w, 5))):
        conv(f"s1.pathway{p}_stem.conv", (width, 3, kt, 7, 7))
        bn(f"s1.pathway{p}_stem.bn", width)
    for s in range(4):
        conv(f"s{s + 1}_fuse.conv_f2s", (2 * fuse_in[s], fuse_in[s], fusion_kernel, 1, 1))
        bn(f"s{s + 1}_fuse.bn", 2 * fuse_in[s])
    for p, (width, kts) in enumerate(((base, slow_kt), (fast_w, fast_kt))):
        dim_in = width + (2 * fuse_in[0] if p == 0 else 0)
        for s in range(4):
            inner, out = width * 2**s, width * 4 * 2**s
            for i in range(blocks[s]):
                key = f"s{s + 2}.pathway{p}_res{i}"
                if i == 0:
                    conv(f"{key}.branch1", (out, dim_in, 1, 1, 1))
                    bn(f"{key}.branch1_bn", out)
                conv(f"{key}.branch2.a", (inner, dim_in, kts[s], 1, 1))
                bn(f"{key}.branch2.a_bn", inner)
                conv(f"{key}.branch2.b", (inner, inner, 1, 3, 3))
                bn(f"{key}.branch2.b_bn", inner)
                conv(f"{key}.branch2.c", (out, inner, 1, 1, 1))
                bn(f"{key}.branch2.c_bn", out)
                dim_in = out
            if p == 0 and s < 3:
                dim_in = out + 2 * fuse_in[s + 1]
    slow_out, fast_out = base * 32, fast_w * 32
    state["head.projection.weight"] = torch.randn(classes, slow_out + fast_out, generator=gen) * 0.1
    state["head.projection.bias"] = torch.randn(classes, generator=gen)
    return state


def test_pyslowfast_checkpoint_loads_every_tensor(tmp_path):
    state = _pysf_state(50, 16, 8, 4, 7, 5)
    state["s3.pathway0_nonlocal1.conv_theta.weight"] = torch.zeros(1)  # an NL key we do not map
    path = tmp_path / "SLOWFAST_16x8_R50.pyth"
    torch.save({"model_state": state, "cur_epoch": 21}, path)
    model = create_model("slowfast50", num_classes=5, num_frames=8, base_channels=16).eval()
    report = load_weights(model, path, "pyslowfast")
    assert report.missing == [] and report.unexpected == ["s3.pathway0_nonlocal1.conv_theta.weight"]
    assert len(report.loaded) == len(state) - 1 == len(model.state_dict())
    ours = model.state_dict()
    torch.testing.assert_close(ours["backbone.slow.layer1.0.conv1.weight"],
                               state["s2.pathway0_res0.branch2.a.weight"][:, :, 0])
    torch.testing.assert_close(ours["backbone.fast.layer4.2.conv1.weight"], state["s5.pathway1_res2.branch2.a.weight"])
    torch.testing.assert_close(ours["backbone.lateral.3.bn.running_var"], state["s4_fuse.bn.running_var"])
    torch.testing.assert_close(ours["fc.bias"], state["head.projection.bias"])
    assert torch.isfinite(model(torch.randn(1, 3, 4, 32, 32))).all()


def test_pyslowfast_r101_layout_matches_our_r101_exactly(tmp_path):
    state = _pysf_state(101, 16, 8, 4, 5, 4)
    path = tmp_path / "SLOWFAST_8x8_R101.pyth"
    torch.save({"model_state": state}, path)
    model = create_model("slowfast101", num_classes=4, num_frames=8, base_channels=16)
    report = load_weights(model, path, "pyslowfast", strict=True)
    assert len(report.loaded) == len(model.state_dict())


def test_pyslowfast_classifier_of_another_class_count_is_left_out(tmp_path):
    path = tmp_path / "k400.pyth"
    torch.save({"model_state": _pysf_state(50, 16, 8, 4, 7, 5)}, path)
    model = create_model("slowfast50", num_classes=3, num_frames=8, base_channels=16)
    report = load_weights(model, path, "pyslowfast")
    assert report.missing == ["fc.bias", "fc.weight"] and report.unexpected == []
