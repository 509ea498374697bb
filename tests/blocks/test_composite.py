"""The decoupled composite: within each frame, then along time at each position (GTA sec. 3.2)."""

import copy

import pytest
import torch
from torch import nn

from videoattn.blocks import create
from videoattn.errors import ShapeError

from .test_contract import perturb_


def _clip(t=3, h=4, w=5, c=16):
    return torch.randn(2, c, t, h, w, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_spatial_block_is_applied_to_each_frame_on_its_own():
    block = perturb_(create("decoupled", 16, spatial="nl")).double().eval()
    x = _clip()
    # reference: the same Non-local module run on one frame at a time
    expected = torch.cat([block.spatial(x[:, :, t : t + 1]) for t in range(x.shape[2])], dim=2)
    torch.testing.assert_close(block(x), expected)
    # and it is not the spacetime Non-local block: frames do not see each other
    assert not torch.allclose(block(x), block.spatial(x))


def test_temporal_block_is_applied_at_each_position_on_its_own():
    block = perturb_(create("decoupled", 16, num_frames=3,
                            temporal={"name": "nl", "options": {"sub_sample": False}})).double().eval()
    x = _clip()
    expected = torch.empty_like(x)
    for i in range(x.shape[3]):
        for j in range(x.shape[4]):
            expected[:, :, :, i, j] = block.temporal(x[:, :, :, i : i + 1, j : j + 1])[..., 0, 0]
    torch.testing.assert_close(block(x), expected)


def test_dnl_is_the_composite_of_sa_and_ta_with_the_same_keys():
    dnl = perturb_(create("dnl", 16)).double().eval()
    composite = create("decoupled", 16, spatial="sa", temporal="ta").double().eval()
    composite.load_state_dict(dnl.state_dict())  # strict: the same parameter names
    x = _clip()
    torch.testing.assert_close(composite(x), dnl(x))


@pytest.mark.parametrize("name", ["dnl", "tape", "gta"])
def test_frame_and_time_scoped_parts_equal_their_folded_application(name):
    """SA declares scope "frame" and TA scope "time", so the composite skips folding them; folding
    must give the same output and the same batch statistics (training mode)."""
    options = {"gta": {"num_groups": 2}, "tape": {"spatial": True}}.get(name, {})
    block = perturb_(create(name, 16, num_frames=3, **options)).double()
    folded = copy.deepcopy(block)
    folded.spatial.scope = None
    if name != "gta":  # GTA's temporal module mixes positions (regions): it is never folded
        folded.temporal.scope = None
    x = _clip()
    torch.testing.assert_close(block.train()(x), folded.train()(x))
    for a, b in zip(block.modules(), folded.modules()):
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            torch.testing.assert_close(a.running_mean, b.running_mean)
            torch.testing.assert_close(a.running_var, b.running_var)


def test_wrong_frame_count_fails_before_the_spatial_work():
    block = create("decoupled", 16, num_frames=4, spatial="nl", temporal="tape")
    calls = []
    block.spatial.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ShapeError, match="built for num_frames=4"):
        block(torch.randn(1, 16, 3, 4, 4))
    assert calls == []


def test_composite_needs_a_part_and_names_bad_references():
    with pytest.raises(Exception, match="at least one of spatial= / temporal="):
        create("decoupled", 16)
    with pytest.raises(Exception, match="option temporal: expected a block name or a mapping"):
        create("decoupled", 16, temporal=["ta"])
    with pytest.raises(Exception, match="block 'nope' is unknown|unknown block 'nope'|nope"):
        create("decoupled", 16, spatial="nope")
