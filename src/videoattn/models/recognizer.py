"""Recognizers: backbone + inserted blocks + pooling + dropout + linear head + temporal consensus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .. import blocks as block_registry
from ..backbones import InsertionPlan, ResNet, load_pretrained
from ..errors import ConfigError


@dataclass(frozen=True)
class BlockInsertion:
    """One kind of block inserted into the backbone: registry ``name``, where (``plan``) and options."""

    name: str
    plan: str | Mapping = "five_block"
    position: str = "after_block"
    options: Mapping = field(default_factory=dict)

    @classmethod
    def coerce(cls, value) -> BlockInsertion:
        if isinstance(value, BlockInsertion):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"name", "plan", "position", "options"}
            if unknown or "name" not in value:
                raise ConfigError(
                    f"a block insertion needs 'name' and may have 'plan', 'position', 'options'; got keys "
                    f"{sorted(value)}"
                )
            return cls(**value)
        raise ConfigError(f"a block insertion must be a mapping with a 'name', got {value!r}")


def insert_blocks(backbone: ResNet, insertion: BlockInsertion, num_frames: int) -> list[str]:
    """Build ``insertion.name`` blocks into ``backbone``'s slots; returns the module paths filled."""
    plan = InsertionPlan.parse(insertion.plan, insertion.position)
    stage_frames = backbone.stage_num_frames(num_frames)
    filled = []
    for stage_index, (stage, blocks) in enumerate(backbone.stages()):
        for index in plan.indices_for(stage, len(blocks)):
            residual_block = blocks[index]
            slot = plan.position
            if not isinstance(getattr(residual_block, slot), nn.Identity):
                raise ConfigError(
                    f"two insertions target {stage} block {index} ({slot}); combine them into one block"
                )
            channels = residual_block.out_channels if slot == "after_block" else residual_block.conv1.in_channels
            module = block_registry.create(
                insertion.name, channels=channels, num_frames=stage_frames[stage], **dict(insertion.options)
            )
            setattr(residual_block, slot, module)
            filled.append(f"layer{stage_index + 1}.{index}.{slot}")
    return filled


class Recognizer(nn.Module):
    """Maps clips ``(N, 3, T, H, W)`` (or images ``(N, 3, H, W)``) to logits ``(N, num_classes)``.

    The head pools each frame's feature map, applies dropout and the linear classifier, then averages
    the per-frame logits over the T' frames left by the backbone (TSN's average consensus). The
    classifier is linear, so this equals classifying the time-averaged feature.
    """

    def __init__(self, backbone: ResNet, num_classes: int, dropout: float = 0.5, num_frames: int | None = None):
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
    pretrained: str | None = None,
) -> Recognizer:
    """Build a recognizer. ``blocks`` lists :class:`BlockInsertion` (or mappings); ``block_options``
    are merged into the options of every non-shift insertion (the way presets expose e.g.
    ``num_groups`` as an override). ``variant="tsm"`` adds the temporal shift before conv1 of every
    residual block. ``pretrained`` is the path of a local ImageNet ResNet checkpoint."""
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive int, got {num_frames!r}")
    backbone = ResNet(depth, variant, base_channels, temporal_padding, zero_init_residual)
    if pretrained:
        # Before inserting blocks: the checkpoint holds only the trunk, and blocks keep their own init.
        load_pretrained(backbone, pretrained)
    insertions = [BlockInsertion.coerce(b) for b in blocks]
    if block_options:
        insertions = [
            BlockInsertion(b.name, b.plan, b.position, {**b.options, **block_options}) if b.name != "tsm" else b
            for b in insertions
        ]
    if variant == "tsm":
        insertions.insert(0, BlockInsertion("tsm", "all", "before_conv1", {"n_div": tsm_n_div}))
    for insertion in insertions:
        insert_blocks(backbone, insertion, num_frames)
    return Recognizer(backbone, num_classes, dropout, num_frames)


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


def build_image_classifier(*, depth: int = 50, num_classes: int = 1000, base_channels: int = 64,
                           zero_init_residual: bool = False, pretrained: str | None = None,
                           num_frames: int | None = None, dropout: float = 0.0) -> ImageClassifier:
    del num_frames  # images have no time axis; accepted so create_model's signature is uniform
    model = ImageClassifier(depth, num_classes, base_channels, zero_init_residual, dropout)
    if pretrained:
        load_pretrained(model, pretrained)
    return model
