"""Capturing what the blocks of a model see, without changing what the model computes.

:func:`record_inputs` is a recording context: forward pre-hooks on the modules of the requested
types keep a detached copy of each module's input during one forward pass, then are removed. The
hooks sit on the blocks themselves, never on their projections, so every block runs exactly the code
path it runs without capture (fused projections, SDPA, chunked attention) and the model's output is
bit-identical (``tests/visualize/test_capture.py``). The attention maps are then recomputed from the
captured inputs by :mod:`videoattn.visualize.maps`, for the queried positions only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..blocks.factorised import SpatialSelfAttention, TemporalSelfAttention
from ..blocks.gsm import FrameSelfAttention, GateShift
from ..blocks.gta import GlobalTemporalAttention
from ..blocks.non_local import NonLocalBlock
from ..blocks.rnl import RegionNonLocalBlock

__all__ = ["ATTENTION_TYPES", "block_summary", "find_modules", "record_inputs"]

#: The module types whose attention the ``attention`` kind draws.
ATTENTION_TYPES: tuple[type[nn.Module], ...] = (
    NonLocalBlock, SpatialSelfAttention, TemporalSelfAttention, GlobalTemporalAttention,
    RegionNonLocalBlock, FrameSelfAttention, GateShift,
)


def _short(name: str) -> str:
    return name.removeprefix("backbone.")


def find_modules(model: nn.Module, types: tuple[type[nn.Module], ...],
                 select: str | None = None) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every module of ``types`` in ``model`` (paths without ``backbone.``),
    restricted to paths containing ``select`` when given."""
    found = [(_short(name), module) for name, module in model.named_modules() if isinstance(module, types)]
    if select:
        found = [(name, module) for name, module in found if select in name]
    return found


def block_summary(model: nn.Module) -> str:
    """The inserted blocks of ``model`` in one phrase, e.g. ``"gta x2 (layer2.0.after_block, ...)"``,
    for error messages; ``"no inserted blocks"`` for a plain backbone."""
    from ..blocks import registered_blocks

    blocks: dict[str, list[str]] = {}
    for name, module in registered_blocks(model):
        blocks.setdefault(module.registered_block_name, []).append(_short(name))
    if not blocks:
        return "no inserted blocks"
    parts = []
    for kind, paths in blocks.items():
        where = ", ".join(paths[:2]) + (", ..." if len(paths) > 2 else "")
        parts.append(f"{kind} x{len(paths)} ({where})")
    return "; ".join(parts)


@contextlib.contextmanager
def record_inputs(model: nn.Module, types: tuple[type[nn.Module], ...],
                  select: str | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Within the context, each forward of ``model`` stores a detached copy of the input of every
    module of ``types`` (filtered by ``select``) in the yielded dict, keyed by module path.

    The hooks only read the input, so the model's output is unchanged; they are removed on exit.
    """
    records: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in find_modules(model, types, select):
        def hook(_module, args, name=name):
            records[name] = args[0].detach().clone()

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()
