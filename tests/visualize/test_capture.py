"""Capture never changes what the model computes, and leaves no hook behind."""

import torch

from videoattn.visualize import record_inputs
from videoattn.visualize.capture import ATTENTION_TYPES, block_summary

from .conftest import tiny_model


def test_output_identical_with_and_without_capture():
    from videoattn.blocks.bat import BATBase

    model = tiny_model(5)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(x)
        with record_inputs(model, (*ATTENTION_TYPES, BATBase)) as records:
            captured = model(x)
        after = model(x)
    assert torch.equal(plain, captured) and torch.equal(plain, after)
    assert {"layer1.1.after_block", "layer2.0.after_block.spatial", "layer2.0.after_block.temporal",
            "layer2.1.after_block", "layer3.0.after_block.spatial", "layer3.0.after_block.temporal",
            "layer3.1.after_block", "layer3.1.before_conv1.gsm", "layer3.1.before_conv1.attention"} <= set(records)
    assert records["layer2.1.after_block"].shape == (2, 16, 4, 4, 4)
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_block_summary_names_the_blocks():
    summary = block_summary(tiny_model(5))
    for name in ("bat x1", "gta x1", "nl x1", "dnl x1", "rnl x1", "sa_gsm x1"):
        assert name in summary
    assert block_summary(tiny_model(5, blocks=[])) == "no inserted blocks"


def test_demo_and_gta_matrices_share_one_convention():
    """The demo's GTA figure data (analysis.plots) is |M| averaged over groups and heads, as visualize's."""
    from videoattn.analysis.plots import gta_temporal_matrices

    model = tiny_model(5)
    found = gta_temporal_matrices(model)["layer2.0.after_block.temporal"]
    matrix = model.backbone.layer2[0].after_block.temporal.pixel_matrix.detach()
    torch.testing.assert_close(torch.from_numpy(found["pixel"]), matrix.abs().reshape(-1, 4, 4).mean(0))


def test_grad_cam_leaves_the_logits_unchanged():
    from videoattn.visualize.cam import grad_cam

    model = tiny_model(5)
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(x)
    cam, chosen, logits, layer = grad_cam(model, x)
    assert torch.equal(logits, plain[0]) and chosen == int(plain[0].argmax())
    assert cam.shape[0] == 4 and cam.shape[1] * cam.shape[2] > 1  # res5 is 1x1 at 32 px: the last map wider
    assert layer == "res4 output (layer3.1)"
    assert cam.min() >= 0 and cam.max() == 1.0
    assert all(p.grad is None for p in model.parameters())
