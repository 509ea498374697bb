"""How fast a model trains and infers on this machine, against the machine's own matrix-product rate.

``videoattn profile MODEL --speed`` and ``benchmarks/train_step.py`` use this module. A training step is
run exactly as the engine runs it: ``engine.precision.training_step`` (autocast, float logits,
cross-entropy, backward through the fp16 gradient scaler when there is one, scaler or optimizer step,
``zero_grad(set_to_none=True)``) with the engine's fused SGD (``engine.trainer.build_optimizer``).
Its rate is ``2 x 3 x forward MACs per clip x clips / seconds``
(fvcore convention: a MAC is one multiply-add, the backward pass does twice the forward's products),
reported as a fraction of a square matrix product's rate measured on the same device and dtype in
the same process: how close the step comes to what the hardware's GEMM kernels can do.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ConfigError


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", size: int = 2048,
                repeats: int = 5) -> float:
    """GFLOP/s (2 n^3 flops) of an ``n x n`` matrix product, best of ``repeats``.

    A 512^2 probe runs first; below 5 GFLOP/s (bf16 on a CPU without AVX-512 BF16 / AMX runs a
    fallback kernel at 0.1-1.5 GFLOP/s, against 20+ for any vectorised one) the probe's rate is
    returned instead of spending minutes on the full size."""
    device = torch.device(device)
    probe_a, probe_b = (torch.randn(512, 512, device=device).to(dtype) for _ in range(2))
    probe_a @ probe_b
    _synchronize(device)
    start = time.perf_counter()
    probe_a @ probe_b
    _synchronize(device)
    probe_rate = 2 * 512**3 / (time.perf_counter() - start) / 1e9
    if probe_rate < 5:
        return probe_rate
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


class TrainingStep:
    """A preset, its engine optimizer and one fixed random batch; :meth:`step` is one training step as
    the engine runs it, :meth:`infer` one evaluation forward of the same batch. Both return seconds."""

    def __init__(self, name: str, precision: str = "fp32", batch: int = 2, frames: int = 8, size: int = 224,
                 channels_last: bool = False, checkpoint_blocks: bool = False, device: str | torch.device = "cpu",
                 num_classes: int = 174, seed: int = 0, **options: Any):
        from ..config import TrainConfig
        from ..engine.precision import Precision
        from ..engine.trainer import build_optimizer
        from ..models import create_model, get_preset
        from ..models.recognizer import set_block_checkpointing, to_channels_last

        if batch < 1 or frames < 1 or size < 32:
            raise ConfigError(f"need batch >= 1, frames >= 1 and size >= 32, got {batch}, {frames}, {size}")
        self.device = torch.device(device)
        gmacs = None  # ``auto`` on a CPU decides from the work per clip, as the engine's does
        if precision == "auto" and self.device.type == "cpu" and size >= 32:
            from .complexity import profile_model

            gmacs = profile_model(name, num_frames=frames, size=size, **options).macs / 1e9
        self.precision = Precision.resolve(precision, self.device, "--precision", gmacs)  # before any work
        torch.manual_seed(seed)
        is_image = get_preset(name).input_kind == "image"
        self.model = create_model(name, num_classes=num_classes, num_frames=None if is_image else frames,
                                  **options)
        if checkpoint_blocks:
            set_block_checkpointing(self.model, True)
        if channels_last:
            to_channels_last(self.model)
        self.model.to(self.device).train()
        shape = (batch, 3, size, size) if is_image else (batch, 3, frames, size, size)
        self.inputs = torch.randn(shape, device=self.device)
        self.labels = torch.arange(batch, device=self.device) % num_classes
        self.optimizer = build_optimizer([p for p in self.model.parameters() if p.requires_grad],
                                         TrainConfig(lr=0.01, momentum=0.9, weight_decay=1e-4))
        self.criterion = torch.nn.CrossEntropyLoss()
        self.scaler = self.precision.scaler()  # fp16: the engine's GradScaler, stepped with the optimizer

    def step(self) -> float:
        from ..engine.precision import training_step

        _synchronize(self.device)
        start = time.perf_counter()
        loss = training_step(self.model, self.inputs, self.labels, self.criterion, self.optimizer, self.precision,
                             self.scaler)
        float(loss)  # waits for the device
        return time.perf_counter() - start

    def infer(self) -> float:
        self.model.eval()
        _synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode(), self.precision.autocast():
            self.model(self.inputs)
        _synchronize(self.device)
        elapsed = time.perf_counter() - start
        self.model.train()
        return elapsed


def peak_rss_bytes() -> int:
    """This process's peak resident set size. On Linux ``VmHWM`` of ``/proc/self/status``: the peak of
    this process's own address space. ``ru_maxrss`` (the fallback elsewhere) is not that on Linux: it
    is carried over fork and exec, so a child started by a parent with a larger resident set reports
    the parent's peak (benchmark children measuring their growth over a baseline read 0.0-4.5 MiB for
    NL blocks that need 77)."""
    import resource
    import sys

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory so far: CUDA ``max_memory_allocated``; on a CPU the process's peak resident set
    (:func:`peak_rss_bytes`, which includes the Python process and libraries)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_bytes() / 2**20


@dataclass
class SpeedReport:
    """What :func:`measure_speed` found (``to_dict`` for JSON)."""

    model: str
    device: str
    threads: int
    precision: str
    channels_last: bool
    input_shape: tuple[int, ...]
    forward_gmacs_per_clip: float
    step_seconds: list[float] = field(default_factory=list)
    inference_seconds: list[float] = field(default_factory=list)
    matmul_gflops: float = 0.0
    peak_memory_mib: float | None = None

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def best_step_seconds(self) -> float:
        return min(self.step_seconds)

    @property
    def train_clips_per_second(self) -> float:
        return self.batch / self.best_step_seconds

    @property
    def inference_clips_per_second(self) -> float | None:
        return self.batch / min(self.inference_seconds) if self.inference_seconds else None

    @property
    def achieved_gflops(self) -> float:
        return 2 * 3 * self.forward_gmacs_per_clip * self.batch / self.best_step_seconds

    @property
    def of_matmul_rate(self) -> float:
        return self.achieved_gflops / self.matmul_gflops

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        for name in ("best_step_seconds", "train_clips_per_second", "inference_clips_per_second",
                     "achieved_gflops", "of_matmul_rate"):
            out[name] = getattr(self, name)
        return out


def measure_speed(name: str, batch: int = 2, frames: int = 8, size: int = 224, precision: str = "fp32",
                  channels_last: bool = False, device: str | torch.device = "cpu", rounds: int = 3,
                  inference: bool = True, num_classes: int = 174, **options: Any) -> SpeedReport:
    """Time ``rounds`` training steps (after one warm-up) of preset ``name`` and, with ``inference``, as
    many evaluation forwards; measure this device's matrix-product rate in ``precision`` right after."""
    from .complexity import profile_model

    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    macs = profile_model(name, num_classes=num_classes, num_frames=frames, size=size, **options).macs
    case = TrainingStep(name, precision, batch, frames, size, channels_last=channels_last, device=device,
                        num_classes=num_classes, **options)
    case.step()  # warm-up: allocator, oneDNN / cuDNN primitives
    report = SpeedReport(name, str(case.device), torch.get_num_threads(), case.precision.name, channels_last,
                         tuple(case.inputs.shape), macs / 1e9)
    for _ in range(rounds):
        report.step_seconds.append(case.step())
        if inference:
            report.inference_seconds.append(case.infer())
    report.peak_memory_mib = peak_memory_mib(case.device)
    report.matmul_gflops = matmul_rate(case.precision.dtype, case.device)
    return report
