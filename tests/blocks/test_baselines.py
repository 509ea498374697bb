"""Attention baselines (se, cbam, gc) against float64 references from their papers' equations."""

from __future__ import annotations

import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ConfigError

from ._block_refs import randomize_
from ._rnl_refs import reference_cbam, reference_gc, reference_se, weights_of

CHANNELS = 32  # C/16 = 2


def video(batch=2, frames=3, height=4, width=5, seed=3):
    return torch.randn(batch, CHANNELS, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_se_matches_equations_2_to_4():
    block = randomize_(create("se", CHANNELS).double())
    assert block.fc1.out_features == CHANNELS // 16
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_se(weights_of(block), x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel", [(1, 7, 7), (3, 3, 3)])
def test_cbam_matches_equations_1_to_3(kernel):
    block = randomize_(create("cbam", CHANNELS, spatial_kernel=kernel).double())
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_cbam(weights_of(block), x, kernel), rtol=1e-10, atol=1e-10)


def test_gc_matches_equation_3_and_is_the_identity_at_init():
    fresh = create("gc", CHANNELS).double()
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), x)
    block = randomize_(fresh)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_gc(weights_of(block), x), rtol=1e-10, atol=1e-10)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="reduction"):
        create("se", CHANNELS, reduction=0)
    with pytest.raises(ConfigError, match="inner width"):
        create("gc", 8)  # 8 // 16 == 0
    with pytest.raises(ConfigError, match="spatial_kernel"):
        create("cbam", CHANNELS, spatial_kernel=(1, 6, 6))
