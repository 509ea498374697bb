"""Composite blocks built from other registered blocks: ``decoupled`` and ``chain``.

``decoupled`` (GTA paper sec. 3.2, Fig. 2(b), Table 5): any registered block applied *within each
frame*, then any registered block applied *along time at each spatial position*. Within a frame
means the frames are folded into the batch, ``(N, C, T, H, W) -> (N*T, C, 1, H, W)``, so the spatial
block sees one frame at a time (a Non-local block becomes spatial attention); along time means the
positions are folded into the batch, ``(N, C, T, H, W) -> (N*H*W, C, T, 1, 1)``. A block that
already restricts itself to one frame (``scope = "frame"``, e.g. SA) or does its own temporal
modelling (``scope = "time"``, e.g. TA, GTA's temporal module) is run on the whole clip instead,
which is the same function without the folding copies. Batch norms see the same set of positions
either way, so their statistics do not change. DNL, TAPE and GTA are instances.

``chain`` (RNL sec. III-D's SE-then-RNL "attention chain"): several registered blocks in one site,
applied in order.

Both are configured from YAML with block references: a block name, or a mapping
``{name: ..., options: {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ._attention import check_video_input, standard_grad
from .registry import create, register_block


def _block_ref(value, where: str) -> tuple[str, dict]:
    """``"name"`` or ``{name: ..., options: {...}}`` -> ``(name, options)``."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and set(value) <= {"name", "options"}:
        options = value.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}: 'options' of block {value['name']!r} must be a mapping, got {options!r}")
        return value["name"], dict(options)
    raise ConfigError(f"{where}: expected a block name or a mapping {{name: ..., options: {{...}}}}, got {value!r}")


def _build(value, channels: int, num_frames: int | None, where: str) -> nn.Module | None:
    if value is None or isinstance(value, nn.Module):
        return value
    name, options = _block_ref(value, where)
    return create(name, channels, num_frames, **options)


@register_block("decoupled", description="any block within each frame, then any block along time (GTA Fig. 2b)")
class Decoupled(nn.Module):
    """``spatial`` within each frame, then ``temporal`` along time at each position (module doc).

    Args:
        channels: C.
        num_frames: T the temporal block is built for (blocks with T-sized parameters need it);
            the spatial block is built for the single frame it sees.
        spatial: block reference (name or ``{name, options}``), a module, or None to skip.
        temporal: block reference, a module, or None to skip.
    """

    block_name = "decoupled"

    def __init__(self, channels: int, num_frames: int | None = None, spatial=None, temporal=None):
        super().__init__()
        if spatial is None and temporal is None:
            raise ConfigError(f"block {self.block_name!r}: give at least one of spatial= / temporal=")
        self.channels = channels
        self.num_frames = num_frames
        self.spatial = _build(spatial, channels, 1, f"block {self.block_name!r} option spatial")
        self.temporal = _build(temporal, channels, num_frames, f"block {self.block_name!r} option temporal")
        parts = [m for m in (self.spatial, self.temporal) if m is not None]
        self.identity_at_init = all(getattr(m, "identity_at_init", False) for m in parts)

    def within_frames(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.spatial, "scope", None) == "frame":
            return self.spatial(x)
        n, c, t, h, w = x.shape
        out = self.spatial(x.transpose(1, 2).reshape(n * t, c, 1, h, w))
        return out.reshape(n, t, c, h, w).transpose(1, 2)

    def along_time(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.temporal, "scope", None) == "time":
            return self.temporal(x)
        n, c, t, h, w = x.shape
        out = self.temporal(x.permute(0, 3, 4, 1, 2).reshape(n * h * w, c, t, 1, 1))
        return out.reshape(n, h, w, c, t).permute(0, 3, 4, 1, 2)

    def check_frames(self, x: torch.Tensor) -> None:
        """Raise a ShapeError for a T the temporal part (if it has T-sized parameters) cannot take."""
        check_frames = getattr(self.temporal, "check_frames", None)
        if check_frames is not None:
            check_frames(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input(self.block_name, x, self.channels)
        self.check_frames(x)  # fail on a wrong T before doing the spatial work
        # the folds' backward can hand back a batch-1 gradient with an odd batch stride (_attention.standard_layout)
        x = standard_grad(x)
        if self.spatial is not None:
            x = self.within_frames(x)
        if self.temporal is not None:
            x = self.along_time(x)
        return x


@register_block("chain", description="several blocks in one site, applied in order (RNL's attention chain)")
class Chain(nn.Module):
    """``blocks`` (a list of block references) applied one after the other in the same site.

    Every block is built for the same channels and frames; the chain is the identity at init when
    each of its blocks is. Parameters are named ``blocks.<i>.*``.
    """

    def __init__(self, channels: int, num_frames: int | None = None, blocks: Sequence = ()):
        super().__init__()
        if isinstance(blocks, (str, Mapping)) or not isinstance(blocks, Sequence) or not blocks:
            raise ConfigError(f"block 'chain': option blocks must be a non-empty list of block names or "
                              f"{{name, options}} mappings, got {blocks!r}")
        self.channels = channels
        self.num_frames = num_frames
        self.blocks = nn.ModuleList(
            _build(ref, channels, num_frames, f"block 'chain' item {i}") for i, ref in enumerate(blocks)
        )
        self.identity_at_init = all(getattr(b, "identity_at_init", False) for b in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_video_input("chain", x, self.channels)
        for block in self.blocks:
            x = block(x)
        return x
