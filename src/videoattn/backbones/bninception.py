"""BN-Inception (Ioffe & Szegedy 2015; the 2D backbone of TSN, TRN and GSM) as a video backbone.

Layer structure, widths, strides, Caffe ceil-mode pooling and biased convolutions follow the model
definition the TSN / TRN / GSM releases build from (``bn_inception.yaml``): a stem
(``conv1_7x7_s2``, max-pool, ``conv2_3x3_reduce``, ``conv2_3x3``, max-pool) and ten inception modules,
3a 3b 3c | 4a 4b 4c 4d 4e | 5a 5b. Eight of them have four branches (1x1; 3x3_reduce -> 3x3;
double_3x3_reduce -> double_3x3_1 -> double_3x3_2; 3x3 pool -> pool_proj, average pooling except 5b's
max) concatenated; 3c and 4e reduce the resolution (3x3 and double_3x3_2 with stride 2, a stride-2 max
pool passed through unchanged). Every convolution has a bias and is followed by BatchNorm and ReLU.
At 224x224 the modules see 28 (3a-3c), 14 (4a-4e) and 7 (5a, 5b) pixels; the output has 1024 channels.

Parameter names. The released ImageNet checkpoint names its tensors flat, ``inception_3a_1x1.weight``,
``inception_3a_1x1_bn.running_mean``, ...; here each inception module is one submodule (a *unit* of
the backbone protocol), so the same tensor is ``inception_3a.1x1.weight``. :meth:`adapt_pretrained_state`
maps the released names (and squeezes the released BN tensors' leading singleton dimension, stored as
``(1, C)``; pretrainedmodels' ``last_linear`` classifier is renamed ``fc``) so
:func:`~videoattn.backbones.pretrained.load_pretrained` matches them by name. Stem names are the same.

Input. The released weights expect BGR images in [0, 255] minus the per-channel mean (104, 117, 128)
(Caffe). The data pipeline produces RGB normalised with the ImageNet mean and std, so with
``input_convention="caffe_bgr"`` (default) the backbone first maps its input back to that range: an
exact per-channel affine map and a channel flip (zero padding of ``conv1`` is unchanged, since it is
applied after the map). ``"none"`` feeds the input as it comes.

Insertion sites (per inception module, stages ``inception3`` (3a-3c), ``inception4`` (4a-4e),
``inception5`` (5a, 5b)):

* ``before_1x1_bn``: after the module's first 1x1 convolution (the 1x1 branch; ``3x3_reduce`` in
  3c and 4e, which have no 1x1 branch) and before its BatchNorm + ReLU: where GSM puts its module.
  Channels 64, 64, 128, 224, 192, 160, 96, 128, 352, 352 at full width.
* ``after_block``: after the concatenation (the module's output).

``base_channels`` (64: the released widths) scales every width by ``base_channels / 64`` for
CPU-sized models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError
from .base import Site, VideoBackbone, run_video_module

CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)

# name: (input, 1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3, pool ("avg"/"max"), pool_proj).
# A module with 1x1 == 0 is a reduction module (3c, 4e): no 1x1, no pool_proj, stride 2.
MODULES: dict[str, tuple[int, int, int, int, int, int, str, int]] = {
    "3a": (192, 64, 64, 64, 64, 96, "avg", 32),
    "3b": (256, 64, 64, 96, 64, 96, "avg", 64),
    "3c": (320, 0, 128, 160, 64, 96, "max", 0),
    "4a": (576, 224, 64, 96, 96, 128, "avg", 128),
    "4b": (576, 192, 96, 128, 96, 128, "avg", 128),
    "4c": (576, 160, 128, 160, 128, 160, "avg", 128),
    "4d": (608, 96, 128, 192, 160, 192, "avg", 128),
    "4e": (608, 0, 128, 192, 192, 256, "max", 0),
    "5a": (1056, 352, 192, 320, 160, 224, "avg", 128),
    "5b": (1024, 352, 192, 320, 192, 224, "max", 128),
}
STAGES = {"inception3": ("3a", "3b", "3c"), "inception4": ("4a", "4b", "4c", "4d", "4e"),
          "inception5": ("5a", "5b")}
INPUT_CONVENTIONS = ("caffe_bgr", "none")


class InceptionModule(nn.Module):
    """One inception module: branches with the released names, concatenated. ``before_1x1_bn`` and
    ``after_block`` are empty insertion slots."""

    def __init__(self, widths: tuple[int, int, int, int, int, int, str, int]):
        super().__init__()
        in_channels, c1x1, c3r, c3, cdr, cd, pool, cpool = widths
        self.reduction = c1x1 == 0
        stride = 2 if self.reduction else 1
        self.in_channels = in_channels
        self._branches: list[list[str]] = []
        if not self.reduction:
            self._add("1x1", in_channels, c1x1, 1)
            self._branches.append(["1x1"])
        self._add("3x3_reduce", in_channels, c3r, 1)
        self._add("3x3", c3r, c3, 3, stride)
        self._branches.append(["3x3_reduce", "3x3"])
        self._add("double_3x3_reduce", in_channels, cdr, 1)
        self._add("double_3x3_1", cdr, cd, 3)
        self._add("double_3x3_2", cd, cd, 3, stride)
        self._branches.append(["double_3x3_reduce", "double_3x3_1", "double_3x3_2"])
        if self.reduction:
            self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        elif pool == "max":
            self.pool = nn.MaxPool2d(3, 1, padding=1, ceil_mode=True)
        else:
            self.pool = nn.AvgPool2d(3, 1, padding=1, ceil_mode=True)
        if cpool:
            self._add("pool_proj", in_channels, cpool, 1)
        self.first = self._branches[0][0]  # the conv whose BN the before_1x1_bn site precedes
        self.site_channels = self.get_submodule(self.first).out_channels
        self.out_channels = (0 if self.reduction else c1x1) + c3 + cd + (cpool or in_channels)
        self.before_1x1_bn: nn.Module = nn.Identity()
        self.after_block: nn.Module = nn.Identity()

    def _add(self, name: str, in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> None:
        self.add_module(name, nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=True))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(out_channels))

    def _conv_bn_relu(self, name: str, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self.get_submodule(name)(x)
        if name == self.first:
            x = run_video_module(self.before_1x1_bn, x, num_frames)
        return F.relu(self.get_submodule(f"{name}_bn")(x))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        outputs = []
        for branch in self._branches:
            out = x
            for name in branch:
                out = self._conv_bn_relu(name, out, num_frames)
            outputs.append(out)
        pooled = self.pool(x)
        outputs.append(pooled if self.reduction else self._conv_bn_relu("pool_proj", pooled, num_frames))
        if self.reduction and outputs[0].shape[-2:] != pooled.shape[-2:]:
            raise ShapeError(
                f"BN-Inception reduction module got a {x.shape[-2]}x{x.shape[-1]} map: its stride-2 convolution "
                f"gives {tuple(outputs[0].shape[-2:])} but its ceil-mode pool {tuple(pooled.shape[-2:])} (as in the "
                "released Caffe model); use input sizes that are multiples of 32 (e.g. 224)"
            )
        return run_video_module(self.after_block, torch.cat(outputs, dim=1), num_frames)


def _scaled(widths, base_channels: int):
    return tuple(w * base_channels // 64 if isinstance(w, int) else w for w in widths)


class BNInception(VideoBackbone):
    """BN-Inception applied to every frame (module docstring); T is kept throughout."""

    site_kinds = ("before_1x1_bn", "after_block")
    unit_name = "inception modules"
    named_plans: dict[str, dict[str, object]] = {}
    pretrained_head_prefix = "fc."

    def __init__(self, base_channels: int = 64, input_convention: str = "caffe_bgr"):
        super().__init__()
        if not isinstance(base_channels, int) or base_channels < 8 or base_channels % 2:
            raise ConfigError(f"BN-Inception base_channels must be an even int >= 8 (64: the released widths), "
                              f"got {base_channels!r}")
        if input_convention not in INPUT_CONVENTIONS:
            raise ConfigError(f"BN-Inception input_convention must be one of {', '.join(INPUT_CONVENTIONS)}, "
                              f"got {input_convention!r}")
        from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

        self.base_channels = base_channels
        self.input_convention = input_convention
        # caffe_bgr: x_bgr255 - mean = x[:, bgr] * 255 std[bgr] + (255 mean[bgr] - caffe_mean)
        bgr = [2, 1, 0]
        self.register_buffer("_input_scale", torch.tensor([255.0 * IMAGENET_STD[c] for c in bgr]),
                             persistent=False)
        self.register_buffer("_input_shift", torch.tensor(
            [255.0 * IMAGENET_MEAN[c] - m for c, m in zip(bgr, CAFFE_BGR_MEAN)]), persistent=False)
        c64, c192 = base_channels, 192 * base_channels // 64
        self.conv1_7x7_s2 = nn.Conv2d(3, c64, 7, 2, 3, bias=True)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(c64)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2_3x3_reduce = nn.Conv2d(c64, c64, 1, bias=True)
        self.conv2_3x3_reduce_bn = nn.BatchNorm2d(c64)
        self.conv2_3x3 = nn.Conv2d(c64, c192, 3, 1, 1, bias=True)
        self.conv2_3x3_bn = nn.BatchNorm2d(c192)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        for name, widths in MODULES.items():
            self.add_module(f"inception_{name}", InceptionModule(_scaled(widths, base_channels)))
        self.out_channels = self.inception_5b.out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(STAGES)

    def units(self):
        for stage, names in STAGES.items():
            for index, name in enumerate(names):
                yield stage, index, f"inception_{name}", self.get_submodule(f"inception_{name}")

    def sites(self, num_frames: int) -> list[Site]:
        sites = []
        for stage, index, path, unit in self.units():
            common = {"stage": stage, "index": index, "unit_path": path, "num_frames": num_frames}
            sites += [
                Site(kind="before_1x1_bn", path=f"{path}.before_1x1_bn", in_channels=unit.site_channels,
                     out_channels=unit.site_channels, **common),
                Site(kind="after_block", path=f"{path}.after_block", in_channels=unit.out_channels,
                     out_channels=unit.out_channels, **common),
            ]
        return sites

    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Released (TSN / TRN / GSM, pretrainedmodels) names and shapes -> this module's."""
        adapted = {}
        for key, value in state.items():
            if key.startswith("last_linear."):
                key = "fc." + key[len("last_linear."):]
            for name in MODULES:
                prefix = f"inception_{name}_"
                if key.startswith(prefix):
                    key = f"inception_{name}.{key[len(prefix):]}"
                    break
            if value.dim() == 2 and value.shape[0] == 1:  # released BN tensors are (1, C)
                value = value[0]
            adapted[key] = value
        return adapted

    def forward_frames(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.input_convention == "caffe_bgr":
            x = x.flip(1) * self._input_scale.view(1, 3, 1, 1) + self._input_shift.view(1, 3, 1, 1)
        x = self.pool1_3x3_s2(F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x))))
        x = F.relu(self.conv2_3x3_reduce_bn(self.conv2_3x3_reduce(x)))
        x = self.pool2_3x3_s2(F.relu(self.conv2_3x3_bn(self.conv2_3x3(x))))
        for _, _, _, unit in self.units():
            x = unit(x, num_frames)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Clips ``(N, 3, T, H, W)`` -> frame-batched features ``(N*T, C, h, w)`` and T."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ShapeError(
                f"BN-Inception video model expects clips (N, 3, T, H, W) (batch, RGB, frames, height, width), "
                f"got shape {tuple(x.shape)}"
            )
        batch, channels, num_frames, height, width = x.shape
        frames = x.transpose(1, 2).reshape(batch * num_frames, channels, height, width)
        return self.forward_frames(frames, num_frames), num_frames
