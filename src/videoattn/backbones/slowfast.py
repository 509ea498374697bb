"""SlowFast-R50/R101 (Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019).

Two ResNet pathways read one clip:

* the **fast** pathway sees all ``T`` input frames, with ``1/beta`` of the channels (``beta_inv = 8``)
  and non-degenerate temporal kernels everywhere: 5x7x7 stem, 3x1x1 ``conv1`` in every bottleneck;
* the **slow** pathway sees every ``alpha``-th frame (``T / alpha``), full width, a 1x7x7 stem and
  3x1x1 ``conv1`` only in res4 and res5 (1x1x1 in res2 and res3), as published;
* **lateral connections** fast -> slow after the stem and after res2, res3, res4: a time-strided
  convolution (kernel ``fusion_kernel`` x1x1, stride ``alpha``, ``fusion_channel_ratio`` = 2 times the
  fast channels out) + BN + ReLU, concatenated to the slow features along channels (so the slow res3
  block 0 reads 256 + 64 = 320 channels for R50);
* no temporal down-sampling anywhere: the slow pathway keeps ``T / alpha`` frames, the fast ``T``.

Model input. One clip ``(N, 3, T, H, W)`` of the fast pathway's frames (``T`` divisible by ``alpha``);
the slow pathway takes frames ``0, alpha, 2 alpha, ...`` of it (the paper's temporal strides tau and
tau / alpha). PySlowFast's ``PackPathway`` instead picks ``linspace(0, T - 1, T / alpha)`` rounded
down, which drifts by up to ``alpha - 1`` frames from that grid (docs/blocks.md).

Head. SlowFast's head pools each pathway over T, H, W and concatenates. Here :meth:`forward` does the
pooling and returns ``(N, C_slow + C_fast, 1, 1)`` features with T' = 1, so the shared recognizer head
(pool, dropout, fc, mean over T') is exactly SlowFast's (global average pooling instead of PySlowFast's
fixed-size ``AvgPool3d``: the same at the training crop, and any crop size works).

Layout and names. Each pathway is a torchvision-named ResNet trunk (``slow.conv1``, ``slow.layer3.0.
conv1``, ``fast.layer1.2.downsample.0``, ...), frame-batched ``(N*T, C, H, W)`` as in
:mod:`~videoattn.backbones.resnet` (BN over N, T, H, W as ``BatchNorm3d``); laterals are
``lateral.{0..3}.conv`` / ``.bn``. :func:`pysf_key` maps PySlowFast's names (``s2.pathway0_res0.
branch2.a``, ``s1_fuse.conv_f2s``, ``head.projection``) to these.

Insertion sites: the slow pathway's residual blocks only, with the ResNet site kinds and stage names
``res2``..``res5`` (``five_block`` = res3 1,3 + res4 1,3,5); a site sees ``T / alpha`` frames.

ImageNet initialisation (:meth:`SlowFast.adapt_pretrained_state`): a 2D torchvision ResNet file initialises
both pathways. Kernels are inflated in time by the loader (repeat and divide by ``kt``); slow tensors
that read lateral channels get zeros for them (PySlowFast's rule when it inflates Caffe2 2D weights),
so the slow pathway starts as the 2D network on its frames; the fast pathway, 1/8 as wide, takes the
leading ``C / beta_inv`` output and input channels of each 2D tensor (there is no published recipe:
SlowFast trains from scratch; docs/blocks.md). Laterals start at their own initialisation.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from .base import Site, VideoBackbone
from .resnet import (
    DEPTHS,
    STAGE_NAMES,
    Bottleneck,
    TemporalConv,
    _apply_conv,
    _conv,
    init_trunk_weights,
    residual_block_sites,
)

# Temporal kernel of conv1 in each stage's bottlenecks (PySlowFast's "slowfast" kernel basis).
SLOW_TEMPORAL = {"res2": 1, "res3": 1, "res4": 3, "res5": 3}
FAST_TEMPORAL = {"res2": 3, "res3": 3, "res4": 3, "res5": 3}
SLOW_STEM_TEMPORAL, FAST_STEM_TEMPORAL = 1, 5


class Pathway(nn.Module):
    """One ResNet pathway (stem + res2..res5) with ``lateral_in[i]`` extra input channels at stage i
    (the lateral features concatenated before it); torchvision parameter names."""

    def __init__(self, depth: int, width: int, stem_temporal: int, stage_temporal: dict[str, int],
                 lateral_in: tuple[int, int, int, int], temporal_padding: str = "zeros"):
        super().__init__()
        _, layers = DEPTHS[depth]
        self.conv1 = _conv(3, width, 7, 2, 3, temporal_kernel=stem_temporal, temporal_padding=temporal_padding)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = width
        for stage_index, (stage, num_blocks) in enumerate(zip(STAGE_NAMES, layers)):
            planes, stride = width * 2**stage_index, 1 if stage_index == 0 else 2
            in_channels = channels + lateral_in[stage_index]
            blocks = []
            for block_index in range(num_blocks):
                downsample = None
                if block_index == 0:  # always true for a bottleneck stage: in != 4 * planes or stride 2
                    downsample = nn.Sequential(nn.Conv2d(in_channels, planes * 4, 1, stride, bias=False),
                                               nn.BatchNorm2d(planes * 4))
                blocks.append(Bottleneck(in_channels, planes, stride if block_index == 0 else 1, downsample,
                                         stage_temporal[stage], temporal_padding))
                in_channels = planes * 4
            channels = in_channels
            self.add_module(f"layer{stage_index + 1}", nn.ModuleList(blocks))
        self.out_channels = channels
        self.stage_channels = tuple(width * 4 * 2**i for i in range(4))

    def stages(self) -> list[tuple[str, nn.ModuleList]]:
        return [(name, getattr(self, f"layer{i + 1}")) for i, name in enumerate(STAGE_NAMES)]

    def stem(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.maxpool(F.relu(self.bn1(_apply_conv(self.conv1, x, num_frames))))

    def stage(self, index: int, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for block in getattr(self, f"layer{index + 1}"):
            x = block(x, num_frames)
        return x


class Lateral(nn.Module):
    """Fast -> slow lateral connection: time-strided ``kernel x 1 x 1`` convolution + BN + ReLU."""

    def __init__(self, fast_channels: int, out_channels: int, kernel: int, alpha: int):
        super().__init__()
        self.conv = TemporalConv(fast_channels, out_channels, (kernel, 1, 1), (alpha, 1, 1), (kernel // 2, 0, 0))
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, fast: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, int]:
        out, frames = self.conv.forward_frames(fast, num_frames)
        return F.relu(self.bn(out)), frames


class SlowFast(VideoBackbone):
    """SlowFast backbone: clips ``(N, 3, T, H, W)`` -> pooled, concatenated pathway features
    ``(N, C_slow + C_fast, 1, 1)`` and T' = 1 (see the module docstring)."""

    site_kinds = ("after_block", "before_conv1", "before_residual", "replace_conv2")
    unit_name = "residual blocks"
    named_plans = {"five_block": {"res3": (1, 3), "res4": (1, 3, 5)}}

    def __init__(self, depth: int = 50, alpha: int = 4, beta_inv: int = 8, fusion_kernel: int = 5,
                 fusion_channel_ratio: int = 2, base_channels: int = 64, temporal_padding: str = "zeros",
                 zero_init_residual: bool = True):
        super().__init__()
        if depth not in (50, 101, 152):
            raise ConfigError(f"SlowFast depth must be 50, 101 or 152 (bottleneck ResNets), got {depth!r}")
        for name, value in (("alpha", alpha), ("beta_inv", beta_inv), ("fusion_channel_ratio", fusion_channel_ratio)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"SlowFast {name} must be a positive int, got {value!r}")
        if not isinstance(fusion_kernel, int) or fusion_kernel < 1 or fusion_kernel % 2 == 0:
            raise ConfigError(f"SlowFast fusion_kernel must be a positive odd int, got {fusion_kernel!r}")
        if not isinstance(base_channels, int) or base_channels < 8 or base_channels % beta_inv:
            raise ConfigError(f"SlowFast base_channels must be an int >= 8 divisible by beta_inv={beta_inv}, "
                              f"got {base_channels!r}")
        self.depth, self.alpha, self.beta_inv = depth, alpha, beta_inv
        fast_width = base_channels // beta_inv
        fast_channels = (fast_width,) + tuple(fast_width * 4 * 2**i for i in range(3))  # stem, res2..res4
        lateral_out = tuple(c * fusion_channel_ratio for c in fast_channels)
        self.fast = Pathway(depth, fast_width, FAST_STEM_TEMPORAL, FAST_TEMPORAL, (0, 0, 0, 0), temporal_padding)
        self.slow = Pathway(depth, base_channels, SLOW_STEM_TEMPORAL, SLOW_TEMPORAL, lateral_out, temporal_padding)
        self.lateral = nn.ModuleList(Lateral(c, o, fusion_kernel, alpha) for c, o in zip(fast_channels, lateral_out))
        self.out_channels = self.slow.out_channels + self.fast.out_channels
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool):
        # PySlowFast's ZERO_INIT_FINAL_BN (on in all its SlowFast configs) is zero_init_residual here
        blocks = [b for pathway in (self.slow, self.fast) for _, stage in pathway.stages() for b in stage]
        init_trunk_weights(self, blocks if zero_init_residual else ())

    # --- the backbone protocol -----------------------------------------------------------------------
    @property
    def stage_names(self) -> tuple[str, ...]:
        return STAGE_NAMES

    def slow_frames(self, num_frames: int) -> int:
        """Frames the slow pathway (and every insertion site) sees for a ``num_frames`` clip."""
        return max(num_frames // self.alpha, 1)

    def sites(self, num_frames: int) -> list[Site]:
        """The slow pathway's residual-block sites; each sees ``num_frames / alpha`` frames."""
        frames = self.slow_frames(num_frames)
        sites = []
        for stage_index, (stage, blocks) in enumerate(self.slow.stages()):
            for index, block in enumerate(blocks):
                sites += residual_block_sites(block, stage, index, f"slow.layer{stage_index + 1}.{index}", frames)
        return sites

    def init_unit_from_scratch(self, site: Site) -> None:
        nn.init.zeros_(self.get_submodule(site.unit_path).bn_last.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Clips ``(N, 3, T, H, W)`` (T = the fast pathway's frames) -> ``((N, C_slow + C_fast, 1, 1), 1)``."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ShapeError(f"SlowFast expects clips (N, 3, T, H, W) of the fast pathway's frames, got shape "
                             f"{tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        if frames % self.alpha:
            raise ShapeError(f"SlowFast with alpha={self.alpha} needs a frame count divisible by {self.alpha} "
                             f"(the slow pathway takes every {self.alpha}-th frame), got T={frames}")
        slow_frames = frames // self.alpha
        slow = x[:, :, :: self.alpha].transpose(1, 2).reshape(batch * slow_frames, channels, height, width)
        fast = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        slow, fast = self.slow.stem(slow, slow_frames), self.fast.stem(fast, frames)
        slow = self._fuse(0, slow, fast, frames)
        for index in range(4):
            slow, fast = self.slow.stage(index, slow, slow_frames), self.fast.stage(index, fast, frames)
            if index < 3:
                slow = self._fuse(index + 1, slow, fast, frames)
        pooled = torch.cat([_pool(slow, batch), _pool(fast, batch)], dim=1)
        return pooled[:, :, None, None], 1

    def forward_pathways(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output of both pathways in the public ``(N, C, T, H, W)`` layout (before the
        laterals are concatenated), keyed ``slow.stem``, ``fast.res2``, ...; for inspection and tests."""
        batch, channels, frames, height, width = x.shape
        slow_frames = frames // self.alpha
        out = {}
        slow = x[:, :, :: self.alpha].transpose(1, 2).reshape(batch * slow_frames, channels, height, width)
        fast = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        slow, fast = self.slow.stem(slow, slow_frames), self.fast.stem(fast, frames)
        out["slow.stem"], out["fast.stem"] = _video(slow, batch), _video(fast, batch)
        slow = self._fuse(0, slow, fast, frames)
        for index, stage in enumerate(STAGE_NAMES):
            slow, fast = self.slow.stage(index, slow, slow_frames), self.fast.stage(index, fast, frames)
            out[f"slow.{stage}"], out[f"fast.{stage}"] = _video(slow, batch), _video(fast, batch)
            if index < 3:
                lateral, _ = self.lateral[index + 1](fast, frames)
                out[f"lateral.{stage}"] = _video(lateral, batch)
                slow = torch.cat([slow, lateral], dim=1)
        return out

    def _fuse(self, index: int, slow: torch.Tensor, fast: torch.Tensor, fast_frames: int) -> torch.Tensor:
        lateral, _ = self.lateral[index](fast, fast_frames)
        return torch.cat([slow, lateral], dim=1)

    # --- ImageNet 2D initialisation --------------------------------------------------------------------
    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a torchvision 2D ResNet state dict onto both pathways (see the module docstring).

        Trunk keys become ``slow.<key>`` and ``fast.<key>``; the classifier (``fc.*``) is passed on
        unchanged for the loader to report; anything else is left as it is (reported as unexpected).
        A slow tensor with more input channels than the 2D one gets zeros for the lateral channels; a
        fast tensor takes the leading channels of the 2D one along its output and input axes.
        """
        own = {k: v for k, v in self.state_dict().items()}
        trunk = re.compile(r"^(conv1|bn1|layer[1-4]\.)")
        adapted: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if not trunk.match(key):
                adapted[key] = value
                continue
            for pathway in ("slow", "fast"):
                name = f"{pathway}.{key}"
                want = own.get(name)
                if want is None or value.dim() == 0:
                    adapted[name] = value
                    continue
                adapted[name] = _fit_channels(value, want.shape, pad=pathway == "slow")
        return adapted


def _fit_channels(value: torch.Tensor, shape: torch.Size, pad: bool) -> torch.Tensor:
    """Crop (fast) or zero-pad (slow, input axis) a 2D tensor's channel axes to ``shape``'s; spatial and
    temporal axes are left to the loader (inflation) and its shape check."""
    if value.dim() == 1:
        return value[: shape[0]] if value.shape[0] > shape[0] else value
    out = value[: shape[0]] if value.shape[0] > shape[0] else value
    if out.dim() >= 2:
        if out.shape[1] > shape[1]:
            out = out[:, : shape[1]]
        elif out.shape[1] < shape[1] and pad:
            zeros = out.new_zeros((out.shape[0], shape[1] - out.shape[1], *out.shape[2:]))
            out = torch.cat([out, zeros], dim=1)
    return out.contiguous()


def _pool(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Frame-batched ``(N*T, C, h, w)`` -> ``(N, C)``, the mean over T, h and w."""
    return x.view(batch, -1, *x.shape[1:]).mean(dim=(1, 3, 4))


def _video(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x.view(batch, -1, *x.shape[1:]).transpose(1, 2)


# --- PySlowFast checkpoint names ----------------------------------------------------------------------
_PYSF_BLOCK = re.compile(r"^s([2-5])\.pathway([01])_res(\d+)\.(branch1_bn|branch1|branch2\.[abc](?:_bn)?)\.(.+)$")
_PYSF_STEM = re.compile(r"^s1\.pathway([01])_stem\.(conv|bn)\.(.+)$")
_PYSF_FUSE = re.compile(r"^s([1-4])_fuse\.(conv_f2s|bn)\.(.+)$")
_BRANCH = {"branch1": "downsample.0", "branch1_bn": "downsample.1", "branch2.a": "conv1", "branch2.a_bn": "bn1",
           "branch2.b": "conv2", "branch2.b_bn": "bn2", "branch2.c": "conv3", "branch2.c_bn": "bn3"}
_PATHWAY = {"0": "slow", "1": "fast"}


def pysf_key(key: str) -> str | None:
    """Our recognizer key for a PySlowFast SlowFast key, or None for a key we have no counterpart of
    (e.g. its non-local blocks ``s3.pathway0_nonlocal1.*``)."""
    if match := _PYSF_BLOCK.match(key):
        stage, pathway, index, branch, rest = match.groups()
        return f"backbone.{_PATHWAY[pathway]}.layer{int(stage) - 1}.{index}.{_BRANCH[branch]}.{rest}"
    if match := _PYSF_STEM.match(key):
        pathway, part, rest = match.groups()
        return f"backbone.{_PATHWAY[pathway]}.{'conv1' if part == 'conv' else 'bn1'}.{rest}"
    if match := _PYSF_FUSE.match(key):
        index, part, rest = match.groups()
        return f"backbone.lateral.{int(index) - 1}.{'conv' if part == 'conv_f2s' else 'bn'}.{rest}"
    if key.startswith("head.projection."):
        return "fc." + key.removeprefix("head.projection.")
    return None
