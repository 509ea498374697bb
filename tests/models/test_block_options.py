"""``block_options`` reach the blocks of every preset by one rule (``videoattn.models.block_options``).

Every preset of ``list_models()`` is built on the ``meta`` device (no memory, no arithmetic) with the
calls to the block factory recorded: a preset with blocks accepts ``block_options`` naming an option
its blocks take, and that option reaches every block of that kind (inner blocks of composites
included); an unknown option is refused with one line naming the preset, the block and the option.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import videoattn.blocks as blocks_package
import videoattn.blocks.composite as composite_module
from videoattn.errors import ConfigError
from videoattn.models import create_model, list_models
from videoattn.models.block_options import COMPOSITE_ROLES, SHIFT_BLOCKS, apply_block_options

NOT_OPTIONS = {"channels", "num_frames", "self", "out_channels", "stride"}


@pytest.fixture
def created(monkeypatch):
    """``(name, options)`` of every block the registry builds, whether a builder or a composite asks."""
    calls: list[tuple[str, dict]] = []
    real = blocks_package.create

    def spy(name, channels, num_frames=None, **options):
        calls.append((name, dict(options)))
        return real(name, channels, num_frames, **options)

    monkeypatch.setattr(blocks_package, "create", spy)
    monkeypatch.setattr(composite_module, "create", spy)
    return calls


def _build(name: str, **options) -> None:
    with torch.device("meta"):
        create_model(name, num_frames=8, **options)


def _leaves(calls) -> dict[str, list[dict]]:
    leaves: dict[str, list[dict]] = {}
    for block, options in calls:
        if block not in SHIFT_BLOCKS and block not in COMPOSITE_ROLES:
            leaves.setdefault(block, []).append(options)
    return leaves


def _an_option(block: str, given: list[dict]) -> tuple[str, object]:
    """An option of ``block`` with a default that the preset does not set, and that default."""
    params = inspect.signature(blocks_package.get_block_spec(block).factory).parameters
    for key, param in params.items():
        if key in NOT_OPTIONS or param.default is inspect.Parameter.empty or param.kind is param.VAR_KEYWORD:
            continue
        if all(key not in options for options in given):
            return key, param.default
    raise AssertionError(f"block {block!r}: no option left to test with")


@pytest.mark.parametrize("preset", list_models())
def test_every_preset_takes_its_blocks_options_and_refuses_others(preset, created):
    _build(preset)
    leaves = _leaves(created)
    if leaves:
        block = sorted(leaves)[0]
        key, value = _an_option(block, leaves[block])
        created.clear()
        _build(preset, block_options={key: value})
        reached = _leaves(created)[block]
        assert len(reached) == len(leaves[block])
        assert all(options.get(key, "missing") == value for options in reached), (block, key, reached)
    with pytest.raises(ConfigError) as error:
        _build(preset, block_options={"no_such_option": 1})
    message = str(error.value)
    assert "\n" not in message
    assert f"model {preset!r}" in message and "'no_such_option'" in message
    for block in leaves:
        assert f"block {block!r}" in message


def test_composite_options_reach_the_inner_blocks(created):
    """r2d50_gc_decoupled: a flat option reaches both GCNet parts, an addressed one only its part; the
    decoupled block itself never sees them (today's code handed them to it, which refused them)."""
    _build("r2d50_gc_decoupled", block_options={"reduction": 8})
    assert [o["reduction"] for n, o in created if n == "gc"] == [8] * 10
    created.clear()
    _build("r2d50_gc_decoupled", block_options={"temporal": {"reduction": 4}})
    assert [o.get("reduction") for n, o in created if n == "gc"] == [None, 4] * 5


def test_rnl_preset_takes_block_options_per_block_name(created):
    """tsm50_se_rnl (a chain of se_add then rnl): a block name addresses that block only; a flat option
    reaches the blocks that take it. ``rnl_options`` is gone."""
    _build("tsm50_se_rnl", block_options={"se_add": {"reduction": 8}, "aggregation": "avg"})
    se = [o for n, o in created if n == "se_add"]
    rnl = [o for n, o in created if n == "rnl"]
    assert len(se) == len(rnl) == 5
    assert all(o["reduction"] == 8 for o in se) and all(o["aggregation"] == "avg" for o in rnl)
    assert all("aggregation" not in o for o in se)
    with pytest.raises(ConfigError, match="has no option.*rnl_options"):
        _build("tsm50_rnl", rnl_options={"aggregation": "avg"})


def test_shift_blocks_take_no_block_options(created):
    _build("tsm50_gta", block_options={"num_groups": 4})
    assert [o for n, o in created if n == "tsm"] == [{"n_div": 8}] * 16
    with pytest.raises(ConfigError, match=r"model 'tsm50': block_options has option 'n_div', but no block"):
        _build("tsm50", block_options={"n_div": 4})


def test_addressed_option_a_block_does_not_take_is_named():
    with pytest.raises(ConfigError, match=r"block_options\['se_add'\] has option 'kernel_size', which block "
                                          r"'se_add' does not take"):
        apply_block_options([{"name": "chain", "options": {"blocks": ["se_add", "rnl"]}}],
                            {"se_add": {"kernel_size": 3}})
    with pytest.raises(ConfigError, match="addresses 'temporal', which is no block or decoupled part"):
        apply_block_options([{"name": "gta"}], {"temporal": {"num_groups": 2}})
