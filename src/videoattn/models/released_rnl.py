"""Checkpoint layouts of the TSM repository (mit-han-lab/temporal-shift-module, with and without its
NL blocks) and of the RNL authors' release (a fork of it), mapped onto ``tsm50``, ``tsm50_nl`` and
``tsm50_rnl`` / ``tsm50_se_rnl``.

Both store ``module.base_model.<torchvision ResNet>`` and ``module.new_fc`` (the classifier after
dropout). The temporal shift wraps each ``conv1`` (``conv1.net.weight``); a unit with a block is
wrapped as ``layerX.i.block.<unit>`` beside ``layerX.i.nl.<block>``:

* TSM NL (embedded Gaussian, keys/values max-pooled after phi/g): ``theta``, ``phi.0``, ``g.0``,
  ``W.0`` (output conv), ``W.1`` (its BN) -> our ``nl`` block's ``theta``, ``phi``, ``g``,
  ``out_proj``, ``out_norm``; the same tensors, shape for shape.
* RNL: ``theta``, ``W.0``, ``W.1`` as above, and ``penta.weight`` / ``penta.mask``: the channel-wise
  kernel stored as a dense grouped kernel ``(d, d / groups, k)`` (groups of 32 channels) times a frozen
  mask selecting one input per output. We keep the selected entries as a true depthwise kernel
  ``(d, 1, k)`` and refuse a file whose mask is not that selection or whose masked-out weights are
  not zero (they never influence the release's output, so dropping non-zero ones would hide a
  different model). The release's channel gate (``cg.*``, GCNet-style, at res3 block 0) has no
  counterpart in these presets: its keys are reported as unexpected (not loaded).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError
from .released import register_layout

_NL_KEYS = {"theta": "theta", "phi.0": "phi", "g.0": "g", "W.0": "out_proj", "W.1": "out_norm"}
_RNL_KEYS = {"theta": "theta", "W.0": "out_proj", "W.1": "out_norm"}
_WRAPPED = re.compile(r"^(layer\d+\.\d+)\.(block|nl|cg)\.(.+)$")


def _block_prefix(unit: str, target: dict) -> str:
    """Our key prefix of the attention block after ``unit``: the site itself, or the last block of a
    chain there (SE+RNL)."""
    site = f"backbone.{unit}.after_block"
    chained = [k for k in target if k.startswith(site + ".blocks.") and k.endswith(".theta.weight")]
    return chained[0].removesuffix("theta.weight") if chained else site + "."


def _depthwise_from_masked(weight: torch.Tensor, mask: torch.Tensor, where: str) -> torch.Tensor:
    width, per_group = weight.shape[:2]
    if mask.shape != weight.shape:
        raise CheckpointError(f"{where}.mask has shape {tuple(mask.shape)}, expected the weight's "
                              f"{tuple(weight.shape)}")
    expected = torch.zeros_like(mask)
    rows = torch.arange(width)
    expected[rows, rows % per_group] = 1
    if not torch.equal(mask.to(expected.dtype), expected):
        raise CheckpointError(f"{where}.mask is not the channel-wise selection (output o reads input o % {per_group} "
                              f"of its group of {per_group}); this is not a depthwise kernel")
    leaked = (weight * (1 - expected)).abs().max().item()
    if leaked != 0:
        raise CheckpointError(f"{where}.weight has non-zero masked-out entries (max |w| = {leaked:g}); expected "
                              "exactly 0 there, as the release trains them")
    return weight[rows, rows % per_group].unsqueeze(1).clone()


def _convert(state: dict[str, torch.Tensor], model: nn.Module, block_keys: dict[str, str]) -> dict[str, torch.Tensor]:
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    pending_masks = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("new_fc."):
            out["fc." + key.removeprefix("new_fc.")] = value
            continue
        if not key.startswith("base_model."):
            out[key] = value  # reported as unexpected
            continue
        key = key.removeprefix("base_model.").replace(".conv1.net.", ".conv1.")
        match = _WRAPPED.match(key)
        if not match:
            out["backbone." + key] = value
            continue
        unit, part, rest = match.groups()
        if part == "block":
            out[f"backbone.{unit}.{rest}"] = value
        elif part == "nl" and rest.startswith("penta."):
            pending_masks.setdefault(unit, {})[rest.removeprefix("penta.")] = value
        elif part == "nl":
            module, _, leaf = rest.rpartition(".")
            ours = block_keys.get(module)
            out[f"{_block_prefix(unit, target)}{ours}.{leaf}" if ours else f"{unit}.nl.{rest}"] = value
        else:
            out[f"{unit}.{part}.{rest}"] = value  # the release's channel gate: not in our presets
    for unit, parts in pending_masks.items():
        where = f"base_model.{unit}.nl.penta"
        if set(parts) != {"weight", "mask"}:
            raise CheckpointError(f"{where}: expected 'weight' and 'mask', found {sorted(parts)}")
        depthwise = _depthwise_from_masked(parts["weight"], parts["mask"], where)
        out[f"{_block_prefix(unit, target)}region.weight"] = depthwise
    return out


@register_layout("tsm", "TSM repository (mit-han-lab/temporal-shift-module): module.base_model.*, new_fc, NL blocks "
                 "as layerX.i.nl.* (tsm50, tsm50_nl)")
def convert_tsm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return _convert(state, model, _NL_KEYS)


@register_layout("rnl", "RNL authors' release (TSM fork): layerX.i.nl.{theta,penta,W}, dense masked depthwise kernels "
                 "converted to true depthwise ones (tsm50_rnl, tsm50_se_rnl)")
def convert_rnl(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return _convert(state, model, _RNL_KEYS)
