"""NL-family / GTA presets: paper parameter and MAC counts (meta device), and the temporal-order
argument of the GTA paper (sec. 1, 3.3): with average consensus, R2D, NL and DNL cannot see frame
order (their logits are invariant to permuting the input frames), TAPE and GTA can."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoattn.analysis.complexity import profile_model
from videoattn.models import create_model

# preset: (params M and GFLOPs as printed in GTA Tables 1 and 6, or None; params tolerance, MACs tolerance).
PAPER_ROWS = {
    "r2d50_nl": (31.2, 61.1, 0.005, 0.01),  # Table 1
    "r2d50_sa": (27.5, 41.7, 0.005, 0.01),  # Table 6
    "r2d50_ta": (27.5, 41.0, 0.005, 0.01),  # Table 6
    "r2d50_dnl": (31.2, 49.9, 0.005, 0.01),  # Tables 1, 6
    "r2d50_tape": (31.2, None, 0.01, None),  # Table 6 (no FLOPs given)
    "r2d50_gta": (31.2, 50.2, 0.015, 0.05),  # Tables 1, 6; widths not all given, see docs/blocks.md
}


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_r2d50_attention_presets_match_the_paper_counts(name):
    paper_params, paper_gflops, params_tol, macs_tol = PAPER_ROWS[name]
    result = profile_model(name, num_classes=174, num_frames=8, size=224, convention="fvcore")
    assert result.mparams == pytest.approx(paper_params, rel=params_tol)
    if paper_gflops is not None:
        assert result.gmacs == pytest.approx(paper_gflops, rel=macs_tol)


def test_gta_sits_between_dnl_and_nl_in_cost():
    dnl, gta, nl = (profile_model(n) for n in ("r2d50_dnl", "r2d50_gta", "r2d50_nl"))
    assert dnl.gmacs < gta.gmacs < nl.gmacs
    assert gta.gmacs / nl.gmacs < 0.85  # the paper: 50.2 / 61.1 = 0.82


def _perturbed_small_model(name: str, frames: int) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name, num_classes=6, num_frames=frames, base_channels=8)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(1.0 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.running_var.fill_(1.0)
        # move the inserted blocks (and their zero-init BNs) away from the identity
        # Small absolute noise (GTA's region branch is cubic in its input scale, so large noise on
        # W_G overflows float32 in a 50-layer net), but enough to make attention non-uniform.
        for path, module in model.named_modules():
            if path.endswith("after_block") and not isinstance(module, nn.Identity):
                for param_name, param in module.named_parameters():
                    noise = torch.randn(param.shape, generator=gen)
                    if param_name.endswith("positional_embedding.embedding"):
                        param.add_(noise)  # a trained embedding is comparable to the features
                    elif param_name.endswith("out_norm.weight"):
                        param.add_(0.5 + 0.1 * noise)  # zero-initialised gammas
                    else:
                        param.add_(0.05 * noise)
    return model.eval()


@pytest.mark.parametrize("name,order_aware", [
    ("r2d50", False), ("r2d50_nl", False), ("r2d50_dnl", False), ("r2d50_ta", False),
    ("r2d50_tape", True), ("r2d50_gta", True),
])
def test_frame_permutation_invariance_only_for_order_blind_models(name, order_aware):
    frames = 4
    model = _perturbed_small_model(name, frames)
    clip = torch.randn(2, 3, frames, 32, 32, generator=torch.Generator().manual_seed(2))
    permutation = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        logits = model(clip)
        permuted = model(clip[:, :, permutation])
    difference = (logits - permuted).abs().max().item()
    scale = logits.abs().max().item()
    assert scale > 1e-3  # the comparison is not between two near-zero vectors
    if order_aware:
        assert difference > 1e-3 * scale, f"{name} should see frame order"
    else:
        assert difference < 1e-4 * scale, f"{name} should be blind to frame order"


def test_r2d18_presets_build_and_run_small():
    for name in ("r2d18_nl", "r2d18_dnl", "r2d18_tape", "r2d18_gta"):
        model = create_model(name, num_classes=5, num_frames=4, base_channels=16,
                             block_options={"num_groups": 4} if name.endswith("gta") else None)
        out = model(torch.randn(1, 3, 4, 32, 32))
        assert out.shape == (1, 5)
