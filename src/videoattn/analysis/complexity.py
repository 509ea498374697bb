"""Parameters and multiply-accumulates (MACs) under the counting conventions the papers use.

Papers report "FLOPs" that are really multiply-accumulates, and they count different things:

``fvcore`` (GTA, BAT, NL-family tables; Facebook's fvcore counter):
    convolutions, linear layers and every matrix product between tensors (``matmul``, ``bmm``,
    ``einsum``, scaled-dot-product attention). One MAC per multiply-add; biases, batch norm,
    activations, pooling and element-wise operations are not counted. Counted here with
    :class:`torch.utils.flop_counter.FlopCounterMode` (which reports 2 FLOPs per MAC) at the level
    of ATen operators, so attention written with any of those operators is included.

``thop`` (RNL's tables; the ``thop``/pytorch-OpCounter package):
    module-level: ``ConvNd`` (MACs, plus one add per output element when the layer has a bias),
    ``BatchNormNd`` (2 operations per element), ``Linear`` (MACs), adaptive average pooling (one
    add per pooled input element plus one division per output). Products between activations that
    are not modules (attention's ``matmul``) are invisible to it, exactly as in that tool.

Both count on the ``meta`` device: no memory is allocated and no arithmetic is done, so a full
ResNet-50 at 8x224x224 is profiled in about a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError

CONVENTIONS = ("fvcore", "thop")


@dataclass(frozen=True)
class Complexity:
    model: str
    convention: str
    params: int
    macs: int
    input_shape: tuple[int, ...]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["gmacs"] = round(self.gmacs, 4)
        out["mparams"] = round(self.mparams, 4)
        return out


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, inputs: torch.Tensor, convention: str = "fvcore") -> int:
    """MACs of one forward pass of ``model`` on ``inputs`` under ``convention``.

    ``model`` and ``inputs`` may live on the ``meta`` device (recommended for full-size models).
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown counting convention {convention!r}; expected one of {CONVENTIONS}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if convention == "fvcore":
                return _count_fvcore(model, inputs)
            return _count_thop(model, inputs)
    finally:
        model.train(was_training)


def _count_fvcore(model: nn.Module, inputs: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(inputs)
    flops = counter.get_total_flops()
    return int(flops // 2)


def _conv_macs(module: nn.modules.conv._ConvNd, inputs, output) -> int:
    kernel = math.prod(module.kernel_size)
    macs = output.numel() * (module.in_channels // module.groups) * kernel
    if module.bias is not None:
        macs += output.numel()
    return macs


def _norm_macs(module, inputs, output) -> int:
    return 2 * inputs[0].numel()


def _linear_macs(module: nn.Linear, inputs, output) -> int:
    return module.in_features * output.numel()


def _adaptive_avg_pool_macs(module, inputs, output) -> int:
    # thop: (kernel adds + 1 division) per output element, kernel = input size / output size.
    spatial_in = math.prod(inputs[0].shape[2:])
    spatial_out = math.prod(output.shape[2:])
    return (spatial_in // spatial_out + 1) * output.numel()


_THOP_RULES: list[tuple[type, Callable]] = [
    (nn.modules.conv._ConvNd, _conv_macs),
    (nn.modules.batchnorm._BatchNorm, _norm_macs),
    (nn.Linear, _linear_macs),
    (nn.AdaptiveAvgPool1d, _adaptive_avg_pool_macs),
    (nn.AdaptiveAvgPool2d, _adaptive_avg_pool_macs),
    (nn.AdaptiveAvgPool3d, _adaptive_avg_pool_macs),
]


def _count_thop(model: nn.Module, inputs: torch.Tensor) -> int:
    total = [0]
    handles = []
    for module in model.modules():
        for module_type, rule in _THOP_RULES:
            if isinstance(module, module_type):
                def hook(mod, args, output, rule=rule):
                    total[0] += int(rule(mod, args, output))
                handles.append(module.register_forward_hook(hook))
                break
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def profile_model(name: str, num_classes: int | None = None, num_frames: int = 8, size: int = 224,
                  convention: str = "fvcore", batch_size: int = 1, **overrides) -> Complexity:
    """Build preset ``name`` on the meta device and count its parameters and MACs per clip."""
    from ..models import create_model, get_preset
    from ..models.recognizer import build_image_classifier

    if size < 32:
        raise ConfigError(f"size must be >= 32 pixels (five stride-2 stages), got {size}")
    is_image = get_preset(name).builder is build_image_classifier
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, num_frames=None if is_image else num_frames,
                             **overrides)
        shape = (batch_size, 3, size, size) if is_image else (batch_size, 3, num_frames, size, size)
        inputs = torch.empty(shape)
    macs = count_macs(model, inputs, convention) // batch_size
    return Complexity(name, convention, count_parameters(model), macs, shape[1:])
