"""ResNet-18..152 for images and videos, with torchvision's parameter names.

One trunk serves the 2D image classifiers and the video variants of the papers:

* ``r2d`` (GTA's R2D): a 2D ResNet applied to every frame; T is kept through all stages.
* ``c2d`` (NL/BAT's C2D): like ``r2d`` plus a temporal max-pool (kernel 2, stride 2) after res2, so
  8 input frames become 4 at res3-res5.
* ``tsm``: ``r2d`` with a temporal shift in the residual branch before conv1 of every block (the
  shift itself is the ``tsm`` block of :mod:`videoattn.blocks.shift`, inserted by the model builder).
* ``i3d``: ``c2d`` whose stem is inflated to 5x7x7 and whose conv1 is inflated to a 3x1x1 kernel on
  the alternate residual blocks used by the Non-local paper's I3D (res2 all, res3/res4 every other
  starting at 0, res5 the middle one).

Layout. Video input is ``(N, 3, T, H, W)``. Inside the trunk the frames are folded into the batch,
``(N*T, C, H, W)``, so every 2D convolution runs as one fast 2D call; the current ``T`` travels
with the tensor through :meth:`ResNet.forward_stages`. Modules inserted into the blocks (attention,
shift) see the public ``(N, C, T, H, W)`` layout through :func:`run_video_module`.

Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
..., ``fc``) so ImageNet checkpoints of torchvision or timm load by path (see
:mod:`videoattn.backbones.pretrained`).

Insertion sites (:class:`~videoattn.backbones.base.VideoBackbone` protocol), per residual block:

* ``before_conv1``: in the residual branch, on the block's input (TSM's residual shift);
* ``before_residual``: at the end of the residual branch, after the last BN and before the
  addition (SE, CBAM and GCNet as published);
* ``after_block``: after the residual addition and ReLU (NL, GTA, BAT, RNL);
* ``replace_conv2``: takes the place of ``conv2`` (the bottleneck's 3x3 convolution, which carries
  the stage's stride in block 0; RSA). The block maps conv2's input channels to its output channels
  with its stride; the BN after it stays.

The three insertion slots are empty ``nn.Identity`` modules (no state-dict keys), so inserted
blocks add their own keys without renaming any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from .base import Site, VideoBackbone, run_video_module

STAGE_NAMES = ("res2", "res3", "res4", "res5")
VARIANTS = ("r2d", "c2d", "tsm", "i3d")
# Non-local paper / mmaction2 I3D-R50: which blocks of each stage inflate conv1 to 3x1x1.
I3D_INFLATE = {
    "res2": lambda i, n: True,
    "res3": lambda i, n: i % 2 == 0,
    "res4": lambda i, n: i % 2 == 0,
    "res5": lambda i, n: i == n // 2,
}


class TemporalConv(nn.Conv3d):
    """A 3D convolution applied to the frame-batched ``(N*T, C, H, W)`` layout.

    ``temporal_padding="zeros"`` pads the time axis with zeros (the papers' setting);
    ``"replicate"`` repeats the first/last frame, which makes an inflated model reproduce its 2D
    source exactly on a static clip (I3D's "boring video" argument) at every frame.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, temporal_padding="zeros"):
        if temporal_padding not in ("zeros", "replicate"):
            raise ConfigError(f"temporal_padding must be 'zeros' or 'replicate', got {temporal_padding!r}")
        self.temporal_padding = temporal_padding
        self.time_pad = padding[0]
        conv_padding = padding if temporal_padding == "zeros" else (0, padding[1], padding[2])
        super().__init__(in_channels, out_channels, kernel_size, stride, conv_padding, bias=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` -> ``(N, C', T, H', W')``."""
        if self.temporal_padding == "replicate" and self.time_pad:
            video = F.pad(video, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return super().forward(video)

    def forward_frames(self, x: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, int]:
        """Frame-batched ``(N*T, C, H, W)`` in and out; returns the output and its T."""
        batch_frames, channels, height, width = x.shape
        video = x.view(batch_frames // num_frames, num_frames, channels, height, width).transpose(1, 2)
        out = self(video)  # through __call__, so hooks (e.g. the thop counter) see it
        new_frames = out.shape[2]
        out = out.transpose(1, 2).reshape(-1, out.shape[1], out.shape[3], out.shape[4])
        return out, new_frames


def _conv(in_channels, out_channels, kernel, stride=1, padding=0, temporal_kernel=1, temporal_padding="zeros"):
    if temporal_kernel == 1:
        return nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
    return TemporalConv(
        in_channels, out_channels, (temporal_kernel, kernel, kernel), (1, stride, stride),
        (temporal_kernel // 2, padding, padding), temporal_padding,
    )


def _apply_conv(conv: nn.Module, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Run a block convolution (2D, inflated 3D, or a block that replaced it) on ``(N*T, C, H, W)``."""
    if isinstance(conv, nn.Conv2d):
        return conv(x)
    if isinstance(conv, TemporalConv):
        out, frames = conv.forward_frames(x, num_frames)
        assert frames == num_frames  # block convolutions keep T (stride 1, "same" padding)
        return out
    return run_video_module(conv, x, num_frames)


class _ResidualBlock(nn.Module):
    """Shared slots of BasicBlock and Bottleneck: ``before_conv1``, ``before_residual``, ``after_block``."""

    expansion = 1

    def _init_slots(self, stride: int):
        self.before_conv1: nn.Module = nn.Identity()
        self.before_residual: nn.Module = nn.Identity()
        self.after_block: nn.Module = nn.Identity()
        # stochastic depth: probability of keeping the residual branch in training (ResNet sets it)
        self.survival_prob = 1.0
        # conv2's shape, kept for the replace_conv2 site after conv2 itself may have been replaced
        self.conv2_shape = (self.conv2.in_channels, self.conv2.out_channels, stride)

    @property
    def in_channels(self) -> int:
        return self.conv1.in_channels

    @property
    def out_channels(self) -> int:
        return self.bn_last.num_features

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.residual(run_video_module(self.before_conv1, x, num_frames), num_frames)
        out = run_video_module(self.before_residual, out, num_frames)
        if self.training and self.survival_prob < 1.0:
            out = _drop_branch(out, num_frames, self.survival_prob)
        out = F.relu(out + identity)
        return run_video_module(self.after_block, out, num_frames)


def residual_block_sites(block: _ResidualBlock, stage: str, index: int, unit: str, num_frames: int) -> list[Site]:
    """The four sites of one residual block at module path ``unit`` (shared by every ResNet-based backbone)."""
    conv_in, conv_out, stride = block.conv2_shape
    common = {"stage": stage, "index": index, "unit_path": unit, "num_frames": num_frames}
    return [
        Site(kind="after_block", path=f"{unit}.after_block", in_channels=block.out_channels,
             out_channels=block.out_channels, **common),
        Site(kind="before_conv1", path=f"{unit}.before_conv1", in_channels=block.in_channels,
             out_channels=block.in_channels, **common),
        Site(kind="before_residual", path=f"{unit}.before_residual", in_channels=block.out_channels,
             out_channels=block.out_channels, **common),
        Site(kind="replace_conv2", path=f"{unit}.conv2", in_channels=conv_in, out_channels=conv_out,
             stride=stride, replaces=True, **common),
    ]

def _drop_branch(out: torch.Tensor, num_frames: int, survival_prob: float) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016) as the RSA release applies it: keep the whole residual
    branch of a *video* (all its frames) with probability ``survival_prob`` and scale the kept
    branches by ``1 / survival_prob``, so the expected output equals the evaluation-mode output."""
    videos = out.shape[0] // num_frames
    keep = torch.empty(videos, 1, 1, 1, dtype=out.dtype, device=out.device).bernoulli_(survival_prob)
    return out * (keep / survival_prob).repeat_interleave(num_frames, dim=0)


class BasicBlock(_ResidualBlock):
    expansion = 1

    def __init__(self, in_channels, planes, stride=1, downsample=None, temporal_kernel=1,
                 temporal_padding="zeros"):
        super().__init__()
        self.conv1 = _conv(in_channels, planes, 3, stride, 1, temporal_kernel, temporal_padding)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self._init_slots(1)

    @property
    def bn_last(self) -> nn.BatchNorm2d:
        return self.bn2

    def residual(self, x, num_frames):
        out = F.relu(self.bn1(_apply_conv(self.conv1, x, num_frames)))
        return self.bn2(_apply_conv(self.conv2, out, num_frames))


class Bottleneck(_ResidualBlock):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, downsample=None, temporal_kernel=1,
                 temporal_padding="zeros"):
        super().__init__()
        width = planes
        self.conv1 = _conv(in_channels, width, 1, 1, 0, temporal_kernel, temporal_padding)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self._init_slots(stride)

    @property
    def bn_last(self) -> nn.BatchNorm2d:
        return self.bn3

    def residual(self, x, num_frames):
        out = F.relu(self.bn1(_apply_conv(self.conv1, x, num_frames)))
        out = F.relu(self.bn2(_apply_conv(self.conv2, out, num_frames)))
        return self.bn3(self.conv3(out))


DEPTHS: dict[int, tuple[type[_ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def init_trunk_weights(trunk: nn.Module, zero_last_bn_of=()) -> None:
    """torchvision's ResNet init: Kaiming normal (fan-out) convolutions, BN gamma 1 and beta 0; the
    last BN gamma of each residual block in ``zero_last_bn_of`` starts at 0 (Goyal et al. 2017)."""
    for module in trunk.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for block in zero_last_bn_of:
        nn.init.zeros_(block.bn_last.weight)


class ResNet(VideoBackbone):
    """The ResNet trunk (stem + res2..res5) for images (``variant=None``) or videos.

    Args:
        depth: 18, 34, 50, 101 or 152.
        variant: ``None`` for images; ``"r2d"``, ``"c2d"``, ``"tsm"`` or ``"i3d"`` for videos (module
            docstring). ``"tsm"`` builds the same trunk as ``"r2d"``; the shift is inserted by
            :func:`videoattn.models.build_recognizer`.
        base_channels: width of the stem and of res2 (64 in the papers; smaller for CPU-sized models).
        temporal_padding: time-axis padding of inflated convolutions (``i3d`` only).
        zero_init_residual: zero the last BN gamma of every residual block (off by default, as in
            torchvision).
        stochastic_depth: drop probability of the last residual block's branch in training; the
            survival probability falls linearly from 1 (first block of res2) to
            ``1 - stochastic_depth`` (last block of res5), as in the RSA release (0.2 there). Each
            video's branch is kept or dropped whole; evaluation is deterministic (no dropping, no
            scaling). 0 (default) turns it off.
    """

    def __init__(self, depth: int = 50, variant: str | None = None, base_channels: int = 64,
                 temporal_padding: str = "zeros", zero_init_residual: bool = False,
                 stochastic_depth: float = 0.0):
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if variant is not None and variant not in VARIANTS:
            raise ConfigError(f"video ResNet variant must be one of {VARIANTS}, got {variant!r}")
        if not isinstance(base_channels, int) or base_channels < 8:
            raise ConfigError(f"base_channels must be an int >= 8, got {base_channels!r}")
        block_type, layers = DEPTHS[depth]
        self.depth = depth
        self.variant = variant
        self.base_channels = base_channels
        inflate = variant == "i3d"
        self.temporal_pool = variant in ("c2d", "i3d")

        self.conv1 = _conv(3, base_channels, 7, 2, 3, temporal_kernel=5 if inflate else 1,
                           temporal_padding=temporal_padding)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        in_channels = base_channels
        for stage_index, (stage, num_blocks) in enumerate(zip(STAGE_NAMES, layers)):
            planes = base_channels * 2**stage_index
            stride = 1 if stage_index == 0 else 2
            blocks = []
            for block_index in range(num_blocks):
                downsample = None
                if block_index == 0 and (stride != 1 or in_channels != planes * block_type.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(in_channels, planes * block_type.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * block_type.expansion),
                    )
                temporal_kernel = 3 if inflate and I3D_INFLATE[stage](block_index, num_blocks) else 1
                blocks.append(block_type(in_channels, planes, stride if block_index == 0 else 1, downsample,
                                         temporal_kernel, temporal_padding))
                in_channels = planes * block_type.expansion
            self.add_module(f"layer{stage_index + 1}", nn.ModuleList(blocks))
        self.out_channels = in_channels
        self._init_weights(zero_init_residual)
        self.set_stochastic_depth(stochastic_depth)

    def set_stochastic_depth(self, drop_prob: float) -> None:
        """Survival probability ``1 - drop_prob * i / (n - 1)`` for residual block ``i`` of ``n``."""
        if isinstance(drop_prob, bool) or not isinstance(drop_prob, (int, float)) or not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f"stochastic_depth must be a drop probability in [0, 1), got {drop_prob!r}")
        blocks = list(self.residual_blocks())
        for index, block in enumerate(blocks):
            block.survival_prob = 1.0 - float(drop_prob) * index / max(len(blocks) - 1, 1)

    def _init_weights(self, zero_init_residual: bool):
        init_trunk_weights(self, self.residual_blocks() if zero_init_residual else ())

    site_kinds = ("after_block", "before_conv1", "before_residual", "replace_conv2")
    unit_name = "residual blocks"
    named_plans = {"five_block": {"res3": (1, 3), "res4": (1, 3, 5)}}

    @property
    def stage_names(self) -> tuple[str, ...]:
        return STAGE_NAMES

    def stages(self) -> list[tuple[str, nn.ModuleList]]:
        return [(name, getattr(self, f"layer{i + 1}")) for i, name in enumerate(STAGE_NAMES)]

    def sites(self, num_frames: int) -> list[Site]:
        """Every insertion site, stage by stage and block by block (see the module docstring)."""
        frames = self.stage_num_frames(num_frames)
        sites = []
        for stage_index, (stage, blocks) in enumerate(self.stages()):
            for index, block in enumerate(blocks):
                sites += residual_block_sites(block, stage, index, f"layer{stage_index + 1}.{index}", frames[stage])
        return sites

    def init_unit_from_scratch(self, site: Site) -> None:
        """A residual block trained from scratch starts as the identity mapping: its last BN gamma is
        zero (Goyal et al. 2017), so a freshly initialised block does not disturb a pretrained trunk."""
        nn.init.zeros_(self.get_submodule(site.unit_path).bn_last.weight)

    def residual_blocks(self):
        for _, blocks in self.stages():
            yield from blocks

    def stage_num_frames(self, num_frames: int) -> dict[str, int]:
        """Frames seen by each stage for a ``num_frames`` input (c2d/i3d halve T after res2)."""
        pooled = num_frames // 2 if self.temporal_pool else num_frames
        return {"res2": num_frames, "res3": pooled, "res4": pooled, "res5": pooled}

    def forward_stages(self, x: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, int]:
        """Run stem and stages on a frame-batched ``(N*T, 3, H, W)`` tensor; return features and T."""
        if isinstance(self.conv1, TemporalConv):
            x, num_frames = self.conv1.forward_frames(x, num_frames)
        else:
            x = self.conv1(x)
        x = self.maxpool(F.relu(self.bn1(x)))
        for stage, blocks in self.stages():
            for block in blocks:
                x = block(x, num_frames)
            if stage == "res2" and self.temporal_pool:
                x, num_frames = _temporal_max_pool(x, num_frames)
        return x, num_frames

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Images ``(N, 3, H, W)`` -> ``(features, 1)``; videos ``(N, 3, T, H, W)`` -> ``(features, T')``.

        Features are ``(N*T', C, h, w)`` with T' the frames left after temporal pooling.
        """
        if self.variant is None:
            if x.dim() != 4 or x.shape[1] != 3:
                raise ShapeError(
                    f"image ResNet expects images (N, 3, H, W), got shape {tuple(x.shape)}"
                )
            return self.forward_stages(x, 1)
        if x.dim() != 5 or x.shape[1] != 3:
            raise ShapeError(
                f"video model expects clips (N, 3, T, H, W) (batch, RGB, frames, height, width), got shape "
                f"{tuple(x.shape)}" + (" - a 4D tensor is one image per sample; add a time axis, e.g. "
                                       "x.unsqueeze(2)" if x.dim() == 4 else "")
            )
        batch, channels, num_frames, height, width = x.shape
        if self.temporal_pool and num_frames < 2:
            raise ShapeError(f"{self.variant} pools time by 2 after res2, so it needs >= 2 frames, got {num_frames}")
        frames = x.transpose(1, 2).reshape(batch * num_frames, channels, height, width)
        return self.forward_stages(frames, num_frames)


def _temporal_max_pool(x: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, int]:
    """Max-pool time with kernel 2, stride 2 (C2D's pool after res2); an odd last frame is dropped."""
    batch_frames, channels, height, width = x.shape
    batch, kept = batch_frames // num_frames, num_frames // 2
    video = x.view(batch, num_frames, channels, height, width)[:, : 2 * kept]
    pooled = video.view(batch, kept, 2, channels, height, width).amax(dim=2)
    return pooled.reshape(batch * kept, channels, height, width), kept
