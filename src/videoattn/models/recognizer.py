"""Recognizers: backbone + inserted blocks + pooling + dropout + linear head + temporal consensus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MethodType

import torch
import torch.utils.checkpoint
from torch import nn

from .. import blocks as block_registry
from ..backbones import InsertionPlan, ResNet, Site, VideoBackbone, load_pretrained
from ..errors import ConfigError
from .backbone_registry import register_backbone
from .block_options import apply_block_options

_INSERTION_KEYS = ("name", "plan", "position", "options", "from_scratch")


@dataclass(frozen=True)
class BlockInsertion:
    """One kind of block inserted into the backbone: registry ``name``, where (``plan`` and
    ``position``, a site kind of the backbone) and options. ``from_scratch=True`` re-initialises the
    units that receive the block and keeps pretrained weights out of them (RSA's bottlenecks)."""

    name: str
    plan: str | Mapping = "five_block"
    position: str = "after_block"
    options: Mapping = field(default_factory=dict)
    from_scratch: bool = False

    @classmethod
    def coerce(cls, value) -> BlockInsertion:
        if isinstance(value, BlockInsertion):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(_INSERTION_KEYS)
            if unknown or "name" not in value:
                raise ConfigError(
                    f"a block insertion needs 'name' and may have {', '.join(repr(k) for k in _INSERTION_KEYS[1:])};"
                    f" got keys {sorted(value)}"
                )
            return cls(**value)
        raise ConfigError(f"a block insertion must be a mapping with a 'name', got {value!r}")


def _site_options(name: str, site: Site) -> dict:
    """Options a replacing block needs to match the module it replaces (channels out, stride)."""
    if not site.replaces:
        return {}
    needed = {}
    if site.out_channels != site.in_channels:
        needed["out_channels"] = site.out_channels
    if site.stride != 1:
        needed["stride"] = site.stride
    spec = block_registry.get_block_spec(name)
    lacking = [k for k in needed if k not in spec.option_names() and not spec.accepts_any_option()]
    if lacking:
        raise ConfigError(
            f"block {name!r} cannot replace the module at site {site.name}: that site maps {site.in_channels} -> "
            f"{site.out_channels} channels with spatial stride {site.stride}, and the block has no "
            f"{' / '.join(repr(k) for k in lacking)} option"
        )
    return needed


def insert_blocks(backbone: VideoBackbone, insertion: BlockInsertion, num_frames: int) -> list[str]:
    """Build ``insertion.name`` blocks into the backbone's sites the plan selects; returns the
    module paths filled (relative to the backbone)."""
    plan = InsertionPlan.parse(insertion.plan, insertion.position)
    filled = []
    for site in plan.select(backbone, num_frames):
        options = {**_site_options(insertion.name, site), **dict(insertion.options)}
        module = block_registry.create(
            insertion.name, channels=site.in_channels, num_frames=site.num_frames, **options
        )
        backbone.set_site(site, module, from_scratch=insertion.from_scratch)
        filled.append(site.path)
    return filled


def assemble_recognizer(backbone: VideoBackbone, insertions: Sequence, *, num_classes: int, num_frames: int,
                        dropout: float = 0.5, pretrained: str | None = None) -> Recognizer:
    """The backbone-independent part of every recognizer builder: insert the blocks, load local
    pretrained weights (after insertion, so replaced modules are reported as skipped and blocks
    keep their own initialisation), add the head."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive int, got {num_frames!r}")
    for insertion in insertions:
        insert_blocks(backbone, BlockInsertion.coerce(insertion), num_frames)
    if pretrained:
        load_pretrained(backbone, pretrained)
    return Recognizer(backbone, num_classes, dropout, num_frames)


class Recognizer(nn.Module):
    """Maps clips ``(N, 3, T, H, W)`` (or images ``(N, 3, H, W)``) to logits ``(N, num_classes)``.

    The head pools each frame's feature map, applies dropout and the linear classifier, then averages
    the per-frame logits over the T' frames left by the backbone (TSN's average consensus). The
    classifier is linear, so this equals classifying the time-averaged feature.
    """

    def __init__(self, backbone: VideoBackbone, num_classes: int, dropout: float = 0.5, num_frames: int | None = None):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.num_frames = num_frames  # the T its T-sized blocks were built for (None: any T)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.out_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Backbone features ``(N*T', C, h, w)`` and T'."""
        return self.backbone(x)

    def forward_frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``(N, T', num_classes)`` before the consensus."""
        batch = x.shape[0]
        features, frames = self.forward_features(x)
        pooled = self.pool(features).flatten(1)
        return self.fc(self.dropout(pooled)).view(batch, frames, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_frame_logits(x).mean(dim=1)


def set_block_checkpointing(model: nn.Module, enabled: bool = True) -> list[str]:
    """Activation checkpointing of every inserted block of ``model`` (``model.checkpoint_blocks``).

    Each outermost registered block with parameters (NL, GTA, ...; the parameter-free shift is left
    alone, it keeps nothing worth recomputing) then runs under ``torch.utils.checkpoint`` with
    ``use_reentrant=False`` while training with gradients on: only its input is kept, and its
    activations (attention maps, projections) are recomputed in the backward pass. Loss and
    gradients are unchanged (the RNG state is replayed, so dropout inside a block draws the same
    mask). BatchNorm running statistics are updated once, as without checkpointing: the buffers
    are put back after the backward pass's recomputation. Returns the names
    of the blocks changed. Weights and state-dict keys are not affected.
    """
    changed = []
    for name, block in block_registry.registered_blocks(model):
        if not any(p.requires_grad for p in block.parameters()):
            continue
        if enabled:
            block.forward = MethodType(_checkpointed_forward, block)
        else:
            block.__dict__.pop("forward", None)
        changed.append(name)
    return changed


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = type(self).forward.__get__(self)
    if not (self.training and torch.is_grad_enabled()):
        return forward(*args, **kwargs)
    calls = [0]

    def run(*inputs):
        calls[0] += 1
        if calls[0] == 1:
            return forward(*inputs, **kwargs)
        with _running_stats_untouched(self):  # the backward pass's recomputation
            return forward(*inputs, **kwargs)

    return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)


@contextmanager
def _running_stats_untouched(module: nn.Module):
    """BatchNorm running buffers inside ``module`` are restored after the block (the recomputation
    normalises with the same batch statistics, saving the same tensors as the first pass)."""
    saved = [(buffer, buffer.clone()) for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
             for buffer in m.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D weight (the trunk's 2-D convolutions) channels-last, in place; returns ``model``.

    Convolutions whose weight is channels-last produce channels-last outputs, so the whole frame-batched
    trunk then runs in NHWC without converting the input (the first conv does). The same function:
    parameter values, names and ``state_dict`` keys are unchanged (``state_dict`` tensors keep the
    channels-last strides; ``torch.save``/``load_state_dict`` accept them). 5-D weights (inserted
    blocks' 1x1x1 projections, I3D's inflated convs) are left as they are; the inserted blocks take
    the resulting ``channels_last_3d`` video views without copies. The engine applies it for
    ``model.channels_last: true``. Measured on this 2-core CPU (``benchmarks/train_step.py``, batch
    2 x 8 x 224, fp32): R2D-50, R2D-50 + GTA and TSM-R50 training steps take 0.88-0.91x the time.
    """
    with torch.no_grad():
        for param in model.parameters():  # Module.to(memory_format=...) refuses the 5-D weights
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return model


@register_backbone("resnet", description="ResNet video recognizer (r2d, c2d, tsm, i3d variants)")
def build_recognizer(
    *,
    depth: int = 50,
    variant: str | None = "r2d",
    num_classes: int = 400,
    num_frames: int = 8,
    base_channels: int = 64,
    dropout: float = 0.5,
    blocks: Sequence = (),
    block_options: Mapping | None = None,
    tsm_n_div: int = 8,
    temporal_padding: str = "zeros",
    zero_init_residual: bool = False,
    stochastic_depth: float = 0.0,
    pretrained: str | None = None,
) -> Recognizer:
    """Build a ResNet recognizer. ``blocks`` lists :class:`BlockInsertion` (or mappings);
    ``block_options`` reach the inserted blocks by the rule of :mod:`.block_options` (the way presets
    expose e.g. ``num_groups`` as an override). ``variant="tsm"`` adds the temporal shift before
    conv1 of every residual block. ``stochastic_depth`` is the last block's drop probability (survival
    falling linearly from 1, see :class:`ResNet`). ``pretrained`` is the path of a local ImageNet ResNet
    checkpoint."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive int, got {num_frames!r}")
    backbone = ResNet(depth, variant, base_channels, temporal_padding, zero_init_residual, stochastic_depth)
    insertions = apply_block_options(blocks, block_options)
    if variant == "tsm":
        insertions.insert(0, BlockInsertion("tsm", "all", "before_conv1", {"n_div": tsm_n_div}))
    return assemble_recognizer(backbone, insertions, num_classes=num_classes, num_frames=num_frames,
                               dropout=dropout, pretrained=pretrained)


class ImageClassifier(ResNet):
    """torchvision-compatible 2D ResNet classifier: ``(N, 3, H, W)`` -> ``(N, num_classes)``.

    Its ``state_dict`` keys are exactly torchvision's (``conv1.weight`` ... ``fc.bias``). ``dropout``
    before the classifier (0: torchvision's ResNet) adds no keys.
    """

    def __init__(self, depth: int = 50, num_classes: int = 1000, base_channels: int = 64,
                 zero_init_residual: bool = False, dropout: float = 0.0):
        super().__init__(depth, None, base_channels, zero_init_residual=zero_init_residual)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.out_channels, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, _ = super().forward(x)
        return self.fc(self.dropout(self.avgpool(features).flatten(1)))


@register_backbone("resnet_image", input_kind="image", description="torchvision-compatible 2D ResNet "
                   "image classifier")
def build_image_classifier(*, depth: int = 50, num_classes: int = 1000, base_channels: int = 64,
                           zero_init_residual: bool = False, pretrained: str | None = None,
                           num_frames: int | None = None, dropout: float = 0.0, blocks: Sequence = (),
                           block_options: Mapping | None = None) -> ImageClassifier:
    """A 2D ResNet classifier; ``blocks`` (as for :func:`build_recognizer`) go into its sites through
    :func:`insert_blocks`, each site seeing T = 1. Without blocks the keys are exactly torchvision's."""
    del num_frames  # images have no time axis; accepted so create_model's signature is uniform
    model = ImageClassifier(depth, num_classes, base_channels, zero_init_residual, dropout)
    for insertion in apply_block_options(blocks, block_options):
        insert_blocks(model, insertion, num_frames=1)
    if pretrained:
        load_pretrained(model, pretrained)
    return model
