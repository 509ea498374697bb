"""CGNL and GloRe against float64 references from their papers' equations; identity at init; the
decoupled composite's folded shapes."""

from __future__ import annotations

import math

import pytest
import torch

from videoattn.blocks import create
from videoattn.errors import ConfigError

from ._block_refs import randomize_
from ._nl_variant_refs import cgnl_pairwise, reference_cgnl, reference_glore
from ._rnl_refs import weights_of

CHANNELS = 16


def video(batch=2, frames=2, height=3, width=3, seed=5):
    return torch.randn(batch, CHANNELS, frames, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def randomized(name, **options):
    block = randomize_(create(name, CHANNELS, **options).double())
    with torch.no_grad():  # GroupNorm is not a _BatchNorm: move its zero-initialised affine too
        for module in block.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.add_(1.0)
    return block


@pytest.mark.parametrize("options", [
    {"groups": 4, "kernel": "gaussian", "order": 3, "gamma": 1e-4},
    # a large gamma makes the higher Taylor terms visible at float64 precision
    {"groups": 2, "kernel": "gaussian", "order": 2, "gamma": 0.3},
    {"groups": 4, "kernel": "dot"},
    {"groups": 1, "kernel": "dot", "scale": True},
])
def test_cgnl_matches_its_equations(options):
    block = randomized("cgnl", **options)
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_cgnl(weights_of(block), x, **options), rtol=1e-9, atol=1e-9)


def test_cgnl_taylor_kernel_approximates_the_gaussian():
    """The expanded kernel times exp(-gamma (theta^2 + phi^2 - 2)) (undoing the release's constant beta)
    is exp(-gamma (theta - phi)^2) up to the order-P remainder."""
    gamma = 0.05
    for theta, phi in ((0.7, -1.2), (1.5, 0.4), (-0.3, -0.9)):
        exact = math.exp(-gamma * (theta - phi) ** 2)
        approx = cgnl_pairwise(theta, phi, "gaussian", 6, gamma) * math.exp(-gamma * (theta ** 2 + phi ** 2 - 2))
        assert approx == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize("normalize", [False, True])
def test_glore_matches_its_equations(normalize):
    block = randomized("glore", normalize=normalize)
    assert (block.nodes, block.states) == (CHANNELS // 4, CHANNELS // 2)
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_glore(weights_of(block), x, normalize=normalize),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["cgnl", "glore"])
def test_identity_at_init_and_folded_shapes(name):
    block = create(name, CHANNELS).double()
    x = video()
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    # the decoupled composite folds time and space into the batch: both shapes run, and folding
    # space is the same function as running the block on each position's sequence
    block = randomized(name)
    along_time = video(batch=6, frames=4, height=1, width=1)
    with torch.no_grad():
        folded = block(along_time)
        single = torch.cat([block(along_time[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(folded, single)
    decoupled = create("decoupled", CHANNELS, num_frames=2, spatial=name, temporal=name).double()
    with torch.no_grad():
        torch.testing.assert_close(decoupled(x), x)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="groups=3"):
        create("cgnl", CHANNELS, groups=3)
    with pytest.raises(ConfigError, match="kernel"):
        create("cgnl", CHANNELS, kernel="rbf")
    with pytest.raises(ConfigError, match="order"):
        create("cgnl", CHANNELS, order=-1)
    with pytest.raises(ConfigError, match="gamma"):
        create("cgnl", CHANNELS, gamma=0.0)
    with pytest.raises(ConfigError, match="inner width"):
        create("glore", 2)  # 2 // 4 == 0 nodes
