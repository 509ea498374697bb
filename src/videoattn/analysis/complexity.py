"""Parameters and multiply-accumulates (MACs) under the counting conventions the papers use.

Papers report "FLOPs" that are really multiply-accumulates (one multiply-add = 1), and they count
different things. ``count_macs`` offers two conventions; each counts exactly the operators listed
(``tests/analysis/test_complexity.py`` counts one tiny model of every kind by hand).

``fvcore`` (GTA, BAT, NL-family tables), ATen-level, via
:class:`torch.utils.flop_counter.FlopCounterMode` (which reports 2 FLOPs per MAC; we halve it):

    counted   convolution (any ``aten.convolution``: Conv1/2/3d, their subclasses, ``F.conv*``),
              ``out * (C_in / groups) * prod(kernel)``, bias NOT counted;
              linear layers / ``addmm`` (``F.linear``, ``nn.Linear``), ``in * out`` per row, bias
              NOT counted; ``mm``, ``bmm``, ``baddbmm`` and everything that lowers to them
              (``matmul``, ``@``, ``einsum``), ``m * k * n`` per product;
              scaled-dot-product attention, ``L * S * (E + E_v)`` per batch and head (its two
              products; softmax and scaling not counted), whichever kernel runs: the fused
              CUDA kernels and the math fallback through torch's own formulas, the CPU flash kernel
              (``_scaled_dot_product_flash_attention_for_cpu``, which torch's table does not list)
              through ours.
    not       batch norm and other norms, activations, max / average / adaptive pooling, softmax,
    counted   element-wise arithmetic (residual additions, scaling), reductions (``mean``),
              copies and reshapes.

    Follows fvcore's semantics for the products it counts (one MAC per multiply-add, conv and linear
    biases ignored). It differs from ``fvcore.nn.FlopCountAnalysis``'s defaults, which also count
    ``aten::batch_norm`` (eval mode: 2 per element with affine, 1 without), group/layer/instance
    norm, ``adaptive_avg_pool2d`` (1 per input element) and upsampling / ``grid_sampler``, and which
    do not know ``scaled_dot_product_attention`` (skipped as unsupported). The papers' figures match
    ours (R2D-50: 32.7 G; fvcore's defaults add batch norm, about 0.18 G), i.e. fvcore with the norm,
    pooling and upsampling handles set to ``None``.

``thop`` (RNL's tables; pytorch-OpCounter as released in 2020, ``thop`` 0.0.4), module-level
forward hooks:

    counted   ``ConvNd`` (and subclasses: our ``PointwiseProjection``, ``TemporalConv``):
              ``out * (C_in / groups) * prod(kernel)``, plus 1 per output element when it has a
              bias; ``_BatchNorm`` (and subclasses: ``TokenBatchNorm``): 2 per input element;
              ``nn.Linear``: ``in_features`` per output element, bias NOT counted;
              ``AdaptiveAvgPoolNd``: ``(prod(in_size // out_size) + 1)`` per output element;
              ``AvgPoolNd``: 1 per output element.
    not       anything that is not one of those modules: products between activations
    counted   (``matmul``/``einsum``/SDPA attention), ``F.*`` calls (functional pooling, our temporal
              max-pool, the consensus ``mean``), ``ReLU``, ``MaxPoolNd`` (thop counts both as 0),
              softmax, element-wise arithmetic.

    Differs from thop in two ways: module types are matched with ``isinstance`` (thop matches the
    exact type and counts subclasses as 0, so it would miss our channels-last projections and token
    BN, which replace plain ``Conv3d``/``BatchNorm3d`` one for one), and the modules thop counts
    that none of our models use are left out (``LeakyReLU``, ``Upsample``, RNN cells).

Both count on the ``meta`` device when given one: no memory is allocated and no arithmetic is
done, so a full ResNet-50 at 8x224x224 is profiled in about a second. Counts are per forward pass
in eval mode, for the whole batch.
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


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs (2 per MAC) of attention's two products, ``Q K^T`` and ``softmax(.) V``."""
    batch = math.prod(query_shape[:-2])
    queries, width = query_shape[-2], query_shape[-1]
    keys, value_width = key_shape[-2], value_shape[-1]
    return 2 * batch * queries * keys * (width + value_width)


def _count_fvcore(model: nn.Module, inputs: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    # torch's table has the CUDA SDPA kernels but not the CPU flash kernel, which real CPU tensors
    # (not meta ones) dispatch to for 4-D inputs: without this, attention on CPU counts as 0.
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    })
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


def _avg_pool_macs(module, inputs, output) -> int:
    # thop 0.0.4: one operation per output element, whatever the kernel.
    return output.numel()


_THOP_RULES: list[tuple[type, Callable]] = [
    (nn.modules.conv._ConvNd, _conv_macs),
    (nn.modules.batchnorm._BatchNorm, _norm_macs),
    (nn.Linear, _linear_macs),
    (nn.AdaptiveAvgPool1d, _adaptive_avg_pool_macs),
    (nn.AdaptiveAvgPool2d, _adaptive_avg_pool_macs),
    (nn.AdaptiveAvgPool3d, _adaptive_avg_pool_macs),
    (nn.AvgPool1d, _avg_pool_macs),
    (nn.AvgPool2d, _avg_pool_macs),
    (nn.AvgPool3d, _avg_pool_macs),
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

    if size < 32:
        raise ConfigError(f"size must be >= 32 pixels (five stride-2 stages), got {size}")
    is_image = get_preset(name).input_kind == "image"
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, num_frames=None if is_image else num_frames,
                             **overrides)
        shape = (batch_size, 3, size, size) if is_image else (batch_size, 3, num_frames, size, size)
        inputs = torch.empty(shape)
    macs = count_macs(model, inputs, convention) // batch_size
    return Complexity(name, convention, count_parameters(model), macs, shape[1:])
