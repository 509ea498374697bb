"""Numeric precision and the training step: the one place that knows what ``fp32``/``bf16``/``fp16``/``auto``
mean on a device, and the step the trainer, ``videoattn profile --speed`` and ``benchmarks/train_step.py``
all run.

Precision (``train.precision``, ``eval.precision``, ``profile --precision``, ``demo --precision``):

* ``fp32``: no autocast.
* ``bf16``: ``torch.autocast`` to bfloat16, on CPU or a CUDA GPU with bf16 support (a ConfigError on one
  without), no gradient scaler (bf16 has fp32's range).
  On a CPU without native bf16 (no AVX-512 BF16 / AMX) it runs ~30x slower than fp32:
  :func:`bf16_warning` says so at the start of a run.
* ``fp16``: autocast to float16 with a ``GradScaler``; CUDA only (a :class:`ConfigError` elsewhere).
* ``auto`` (the default): ``bf16`` on a CUDA device with bf16 tensor cores (Ampere and later; fp32 where
  bf16 would be emulated). On a CPU it depends on the CPU and
  on the work per clip (:func:`cpu_auto_precision`, measured in ``benchmarks/cpu_auto.py``): ``bf16`` on a
  CPU with AVX-512 BF16 but no AMX when a clip costs at least :data:`CPU_BF16_MIN_GMACS_PER_CLIP` forward
  GMACs (an R2D-18 at 112 px and up: 1.4-2.8x faster steps there), ``fp32`` for smaller models (the
  gain shrinks to nothing: 0.92x for the 8-wide TSM-R18 of ``configs/tiny.yaml``), on CPUs without native
  bf16 (~30x slower) and on AMX CPUs (not measured here). ``fp32`` everywhere else.

The training step (:func:`forward_backward` then :func:`apply_gradients`; :func:`training_step` is both):
autocast forward, cross-entropy on float32 logits, backward through the scaler when there is one, then
unscale (when clipping), clip, scaler or optimizer step, zero the gradients.

Torch is imported inside the functions, so the configuration can validate precisions without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["PRECISIONS", "Precision", "apply_gradients", "autocast_context", "bf16_warning", "check_precision",
           "CPU_BF16_MIN_GMACS_PER_CLIP", "cpu_auto_precision", "cpu_has_amx", "cpu_has_native_bf16",
           "explain_auto_precision", "evaluation_precision", "forward_backward", "grad_scaler", "precision_dtype",
           "resolve_precision", "training_step"]

#: Every precision a key or flag may name.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_precision(value: Any, key: str = "train.precision") -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else a ConfigError naming ``key``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ConfigError(f"config key {key!r}: got {value!r}; precision must be one of {', '.join(PRECISIONS)}")
    return value


def evaluation_precision(config: Any) -> str:
    """The precision ``test``/``predict`` (and nothing else) score with: ``eval.precision``, or the
    training one when that is unset (null)."""
    return config.eval.precision if config.eval.precision is not None else config.train.precision


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX-512 BF16 or AMX, as oneDNN checks).

    Without it, bf16 autocast on CPU falls back to scalar kernels: on the AVX2 development machine a
    bf16 convolution or GEMM runs ~30x slower than fp32 (``benchmarks/train_step.py``)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Sapphire Rapids and later), which oneDNN uses for bf16 GEMMs."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


#: ``auto`` on a CPU with AVX-512 BF16 (and no AMX) picks bf16 from this many forward GMACs per clip on.
#: Measured (benchmarks/results/cpu_auto.json, quiet machine, 2 threads, fp32 NCHW step over bf16 NCHW
#: step): 0.92x at 0.007 GMACs/clip (configs/tiny.yaml's model), 1.05-1.09x at 0.022 (the demo's R2D-18s
#: at 32 px), 1.36x at 3.9 (R2D-18, 8 x 112), 1.68x at 8.6 (R2D-50, 8 x 112), 2.83x at 32.7 (R2D-50,
#: 8 x 224); a run on the loaded machine (cpu_auto_loaded.json) agreed. The bound sits where every
#: measured case is clearly faster.
CPU_BF16_MIN_GMACS_PER_CLIP = 1.0


def cpu_auto_precision(gmacs_per_clip: float | None) -> tuple[str, str]:
    """What ``auto`` means on this CPU for a model of ``gmacs_per_clip`` forward GMACs per clip (None:
    not known, which stays fp32): ``(precision, reason)``, the reason for the run's log."""
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16 (bf16 autocast would be ~30x slower)"
    if cpu_has_amx():
        return "fp32", "bf16 on AMX CPUs was not measured here; set 'bf16' to try it (R2D-50-size models)"
    if gmacs_per_clip is None:
        return "fp32", "the model's work per clip is not known"
    if gmacs_per_clip < CPU_BF16_MIN_GMACS_PER_CLIP:
        return "fp32", (f"{gmacs_per_clip:.3g} GMACs per clip, under the {CPU_BF16_MIN_GMACS_PER_CLIP:g} "
                        "where bf16 pays on this CPU")
    return "bf16", (f"AVX-512 BF16 CPU, {gmacs_per_clip:.3g} GMACs per clip (>= "
                    f"{CPU_BF16_MIN_GMACS_PER_CLIP:g})")


def explain_auto_precision(device: Any, gmacs_per_clip: float | None = None) -> tuple[str, str]:
    """``(precision, reason)``: what ``auto`` means on ``device`` and why (for the run's start log)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):  # Ampere and later
            return "bf16", "CUDA device with bf16 tensor cores"
        return "fp32", "this GPU has no bf16 tensor cores (bf16 would be emulated)"
    if device.type == "cpu":
        return cpu_auto_precision(gmacs_per_clip)
    return "fp32", f"no rule for {device.type} devices"


def resolve_precision(value: Any, device: Any, key: str = "train.precision",
                      gmacs_per_clip: float | None = None) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) ``value`` means on ``device``; refuses fp16
    without CUDA and bf16 on a GPU without it (a ConfigError naming ``key``) before any work is done.
    ``gmacs_per_clip`` (the model's forward GMACs per clip) lets ``auto`` decide on a CPU
    (:func:`cpu_auto_precision`); without it ``auto`` is fp32 there."""
    import torch

    value = check_precision(value, key)
    device = torch.device(device)
    if value == "auto":
        return explain_auto_precision(device, gmacs_per_clip)[0]
    if value == "fp16" and device.type != "cuda":
        raise ConfigError(f"config key {key!r}: got 'fp16' but fp16 autocast needs a CUDA device "
                          f"(this run is on {device.type}); use 'bf16' on CPU")
    if value == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"config key {key!r}: got 'bf16' but this GPU has no bf16 support; use 'fp16' "
                          "(with its gradient scaler) or 'fp32'")
    return value


def precision_dtype(precision: str) -> Any:
    """The torch dtype of a concrete precision."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast_context(precision: str, device: Any, key: str = "train.precision") -> Any:
    """The autocast context of ``precision`` (``auto`` resolved) on ``device``: a null context for fp32."""
    import torch

    device = torch.device(device)
    precision = resolve_precision(precision, device, key)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision_dtype(precision))


def grad_scaler(precision: str, device: Any, key: str = "train.precision") -> Any:
    """A ``GradScaler`` for fp16 (whose small range needs loss scaling), None for fp32 and bf16."""
    import torch

    device = torch.device(device)
    return torch.amp.GradScaler(device.type) if resolve_precision(precision, device, key) == "fp16" else None


def bf16_warning(precision: str, device: Any, key: str = "train.precision") -> str | None:
    """The warning to give for ``precision`` on ``device``, or None (bf16 on a CPU without it)."""
    import torch

    device = torch.device(device)
    if precision != "bf16" or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return (f"{key} 'bf16' on a CPU without native bf16 (capability "
            f"{torch.backends.cpu.get_cpu_capability()}, no AVX-512 BF16/AMX): autocast falls back to slow "
            f"kernels, about 30x slower than fp32 here; use 'fp32' on this machine")


@dataclass(frozen=True)
class Precision:
    """A precision resolved for a device: ``name`` (fp32/bf16/fp16), its autocast and whether it scales."""

    name: str
    device: Any

    @classmethod
    def resolve(cls, value: Any, device: Any, key: str = "train.precision",
                gmacs_per_clip: float | None = None) -> Precision:
        import torch

        device = torch.device(device)
        return cls(resolve_precision(value, device, key, gmacs_per_clip), device)

    @property
    def dtype(self) -> Any:
        return precision_dtype(self.name)

    def autocast(self) -> Any:
        return autocast_context(self.name, self.device)

    def scaler(self) -> Any:
        """A fresh ``GradScaler`` for fp16, None otherwise."""
        return grad_scaler(self.name, self.device)


def forward_backward(model: Callable, inputs: Any, labels: Any, criterion: Callable, precision: Precision,
                     scaler: Any = None, accumulation: int = 1) -> tuple[Any, Any]:
    """One forward under ``precision``'s autocast, the loss on float32 logits, and the backward of
    ``loss / accumulation`` (the micro-batches of one step add up to their mean), through ``scaler``
    when there is one. Returns ``(loss, logits)``; the loss is the undivided one."""
    with precision.autocast():
        logits = model(inputs)
    loss = criterion(logits.float(), labels)
    scaled = loss / accumulation
    if scaler is not None:
        scaler.scale(scaled).backward()
    else:
        scaled.backward()
    return loss, logits


def apply_gradients(optimizer: Any, parameters: Iterable, scaler: Any = None,
                    clip_grad_norm: float | None = None) -> None:
    """The update after the backward passes of a step: unscale (only to clip), clip the global gradient
    norm, step through the scaler (which skips a step with inf/nan gradients and adapts its scale) or
    the optimizer, and drop the gradients."""
    import torch

    if clip_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training_step(model: Any, inputs: Any, labels: Any, criterion: Callable, optimizer: Any, precision: Precision,
                  scaler: Any = None, clip_grad_norm: float | None = None) -> Any:
    """One whole training step on one batch (no accumulation): :func:`forward_backward` then
    :func:`apply_gradients`. Returns the loss tensor (detached)."""
    loss, _ = forward_backward(model, inputs, labels, criterion, precision, scaler)
    apply_gradients(optimizer, model.parameters(), scaler, clip_grad_norm)
    return loss.detach()
