"""What the kernel modules share: the optional ``triton`` import and output allocation."""

from __future__ import annotations

import torch

try:  # triton is optional (Linux x86_64 CUDA wheels ship it); without it only the PyTorch paths exist
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - depends on the platform
    triton = None
    tl = None


def fresh_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty tensor shaped as ``x`` with the fresh strides of its memory format (channels_last_3d
    when ``x`` is, else contiguous): never the odd batch-1 strides ``empty_like`` may copy
    (``_attention.standard_layout``)."""
    fmt = (torch.channels_last_3d if x.dim() == 5 and not x.is_contiguous()
           and x.is_contiguous(memory_format=torch.channels_last_3d) else torch.contiguous_format)
    return torch.empty(x.shape, dtype=dtype or x.dtype, device=x.device, memory_format=fmt)


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
