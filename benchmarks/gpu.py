"""GPU speed of every block and of whole models (issue 25): one command, one JSON, one markdown table.

Usage::

    python benchmarks/gpu.py                                   # on a CUDA GPU: every row, ~minutes
    python benchmarks/gpu.py --official nl=/src/temporal-shift-module --official gsm=/src/GSM
    python benchmarks/gpu.py --device cpu --tiny               # the whole script at toy sizes (tests)

Blocks (the rows of issue 25's table): forward + backward of one block in train mode, batch
``--clips`` clips x ``--frames`` frames (8 x 8), loss = sum(output * fixed random tensor), input
requiring grad; median of ``--repeats`` timed runs after ``--warmup`` untimed ones, the device
synchronised around each. Every row runs in three precisions: ``fp32`` (TF32 off), ``fp32_tf32``
(``torch.backends.cuda.matmul.allow_tf32`` and cuDNN's TF32 on) and ``bf16`` (autocast). On CUDA
the peak memory of each timed run is recorded too (``torch.cuda.max_memory_allocated``).

Fused Triton kernels (``videoattn.blocks.kernels``): on CUDA with triton, each GTA, GSM, SA-GSM and RSA
row runs with ``kernel: torch`` and is followed by a ``<label> triton`` row with ``kernel: triton``
(what ``auto`` will pick on CUDA once these rows show it faster); elsewhere only the ``kernel: torch``
rows run.

Attention paths: NL at res3 and res4 again with ``attention_impl`` forced to ``explicit`` and to
``sdpa``, beside the default rows (``auto``, whose chosen path is recorded as ``auto_attention``), in
each precision with peak memory: one run checks ``choose_attention_impl``'s per-device table
(``docs/blocks.md``, "Choosing the attention path per device").

Official modules: ``--official NAME=DIR`` (or a bare ``DIR``: every spec whose file is in it and defines
its class) points at a fetched copy of a paper's released repository. Their code is imported from that path at run
time and timed at the same shapes in its own layout; nothing of it is copied here. Known specs:
:data:`OFFICIAL`. A module that fails to build or run (e.g. CUDA-only code on a CPU) gets its error
in the JSON instead of a time.

Whole models: one engine training step (``videoattn.analysis.speed.TrainingStep``: autocast, float
logits, cross-entropy, backward, fused SGD) in bf16 with a channels-last trunk at batch ``--model-batch``
x 8 frames x 224 (SlowFast: 32 frames, :data:`MODEL_FRAMES`), frames/s = clips x frames / median
step; fvcore GMACs per clip beside it, and for each preset its step time and MACs over its trunk's;
the torchvision ResNet-50 row (images/s, same precision, layout and optimizer) when torchvision imports.

``--compile PRESETS``: ``model.compile``'s gain per preset, the same step eager and compiled in place
(``--compile-backend``, default inductor), with the first compiled step's seconds.

Writes ``--out`` (default ``benchmarks/results/gpu.json``; ``--device cpu`` has no default output:
CPU numbers never land in gpu.json) and prints the markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import platform
import re
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from videoattn.errors import ConfigError  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "gpu.json"
PRECISIONS = ("fp32", "fp32_tf32", "bf16")


@dataclass(frozen=True)
class BlockRow:
    """One row of the table: ``block`` (a registry name, or ``conv3d``) at channels ``c`` and ``h x w``."""

    label: str
    block: str
    c: int
    h: int
    w: int
    options: dict = field(default_factory=dict)
    official: str | None = None  # the OFFICIAL spec it is compared with


#: the blocks with a fused Triton kernel (``videoattn.blocks.kernels``): their rows run ``kernel: torch``,
#: and with ``fused`` a ``<label> triton`` row with ``kernel: triton`` follows each
FUSED_BLOCKS = ("gta", "gsm", "sa_gsm", "rsa")


def block_rows(tiny: bool, fused: bool = False) -> list[BlockRow]:
    """Issue 25's rows; ``tiny``: the same rows at toy widths and sizes (a CPU test runs all of them).
    ``fused`` (on CUDA with triton): each GTA / GSM / SA-GSM / RSA row (``kernel: torch``) is followed by
    its ``kernel: triton`` twin, labelled ``<label> triton``."""
    if tiny:
        res3, res4, gsm_a, gsm_b, rsa_a, rsa_b = (32, 8), (64, 4), (16, 8), (32, 4), (16, 8), (32, 4)
        bat = {"s": 4}
        rnl3, rnl4 = {"kernel_size": (3, 3, 3)}, {"kernel_size": (3, 3, 3)}
    else:
        res3, res4, gsm_a, gsm_b, rsa_a, rsa_b = (512, 28), (1024, 14), (192, 28), (352, 7), (128, 28), (256, 14)
        bat = {}
        rnl3, rnl4 = {"kernel_size": (3, 7, 7)}, {"kernel_size": (3, 3, 3)}
    rows = []
    for site, (c, s) in (("res3", res3), ("res4", res4)):
        rows += [BlockRow(f"NL {site}", "nl", c, s, s, official="nl"),
                 BlockRow(f"GTA {site}", "gta", c, s, s, official="nl"),
                 BlockRow(f"DNL {site}", "dnl", c, s, s, official="nl")]
    rows += [BlockRow("RNL res3 3x7x7" if not tiny else "RNL res3", "rnl", res3[0], res3[1], res3[1], rnl3,
                      official="rnl"),
             BlockRow("RNL res4 3x3x3", "rnl", res4[0], res4[1], res4[1], rnl4, official="rnl")]
    for site, (c, s) in (("res3", res3), ("res4", res4)):
        rows += [BlockRow(f"BAT 2D {site}", "bat", c, s, s, bat, official="bat"),
                 BlockRow(f"BAT 3D {site}", "bat3d", c, s, s, bat, official="bat3d")]
    for c, s in (gsm_a, gsm_b):
        rows += [BlockRow(f"GSM C{c} {s}x{s}", "gsm", c, s, s, official="gsm"),
                 BlockRow(f"SA-GSM C{c} {s}x{s}", "sa_gsm", c, s, s, official="sagsm")]
    for c, s in (rsa_a, rsa_b):
        rows += [BlockRow(f"RSA C{c} {s}x{s}", "rsa", c, s, s, official="rsa"),
                 BlockRow(f"conv3d 3x3x3 C{c} {s}x{s}", "conv3d", c, s, s)]
    out = []
    for row in rows:
        if row.block not in FUSED_BLOCKS:
            out.append(row)
            continue
        out.append(replace(row, options={**row.options, "kernel": "torch"}))
        if fused:
            out.append(replace(row, label=f"{row.label} triton", options={**row.options, "kernel": "triton"},
                               official=None))  # the official module is timed once, on the torch row
    return out


#: The attention paths the NL rows are also timed with, to check ``auto``'s per-device rule in one run.
ATTENTION_PATHS = ("explicit", "sdpa")


def attention_rows(tiny: bool) -> list[BlockRow]:
    """NL at res3 and res4 with ``attention_impl`` forced to each path (the default rows are ``auto``):
    ms and peak memory per precision, beside ``auto``'s recorded choice (``docs/blocks.md``, "Choosing
    the attention path per device")."""
    sites = (("res3", 32, 8), ("res4", 64, 4)) if tiny else (("res3", 512, 28), ("res4", 1024, 14))
    return [BlockRow(f"NL {site} {impl}", "nl", c, s, s, {"attention_impl": impl})
            for site, c, s in sites for impl in ATTENTION_PATHS]


@dataclass(frozen=True)
class OfficialSpec:
    """Where a released module lives in its repository and how it is built and fed.

    ``layout``: ``ncthw`` (a video tensor) or ``nt_chw`` (frames folded into the batch, as TSN-style
    code runs, e.g. GSM). ``build(cls, channels, frames, options)`` makes the module; ``options`` are
    the row's options for our block (e.g. RNL's ``kernel_size``, BAT's ``s``), so both run the same
    configuration. ``note``: what is known to differ or to stop it running (shown with an error)."""

    path: str
    cls: str
    layout: str
    build: Callable[[type, int, int, dict], nn.Module]
    source: str
    note: str = ""


def _bat_s(options: dict) -> int:
    s = options.get("s", 7)
    if not isinstance(s, int):
        raise ConfigError(f"the released BAT blocks take one square block count s, got {s!r}")
    return s


#: The released modules this script knows (their repositories are not part of this project; the
#: commits named were the ones checked, docs/blocks.md).
OFFICIAL: dict[str, OfficialSpec] = {
    "nl": OfficialSpec("ops/non_local.py", "NONLocalBlock3D", "ncthw", lambda cls, c, t, o: cls(c),
                       "mit-han-lab/temporal-shift-module @ 1f6a834 (the NL block TSM, GTA and RNL compare with)"),
    "gsm": OfficialSpec("gsm.py", "gsmModule", "nt_chw", lambda cls, c, t, o: cls(c, num_segments=t),
                        "swathikirans/GSM @ 43e8eba"),
    # at our block's defaults: 8 heads, 5x7x7 kernel, relational kernel and context (V + R); dk = dv = dd =
    # 0 (each C/8) as the release's train/test scripts pass them (its constructor's own dk=16 default fails
    # at C=256, where dv = 32: checked on the CPU at c66d7be)
    "rsa": OfficialSpec("ops/rsa.py", "RSA", "ncthw",
                        lambda cls, c, t, o: cls(c, c, nh=8, dk=0, dv=0, dd=0, kernel_size=(5, 7, 7),
                                                 kernel_type="VplusR", feat_type="VplusR"),
                        "KimManjin/RSA @ c66d7be"),
    # NONLocalBlock3D(in_channels, ratio, ks, sub_sample): the RNL block (theta C -> C/2, the masked
    # grouped "depthwise" conv over ks, softmax affinity, W + BN); ops/rnl.py imports ops/depthwise_conv.py
    # relatively, so it is loaded as a package module. Our rows: no sub-sampling, as released.
    "rnl": OfficialSpec("ops/rnl.py", "NONLocalBlock3D", "ncthw",
                        lambda cls, c, t, o: cls(c, ratio=2, ks=list(o.get("kernel_size", (3, 7, 7))),
                                                 sub_sample=False),
                        "russellllaputa/region-based-non-local-network @ 98e5fb3",
                        "dense (d, 32, k) kernel times a frozen mask: 32x our depthwise MACs"),
    # BATBlock(in_channels, r=2, s=4, k=4, dropout=0.2) of the image release: 2-D, one frame per batch
    # entry; sigmoid normalisation (ours: l1). At our block's k = 8, our row's s, no dropout (ours: 0).
    "bat": OfficialSpec("model_zoo/non_local.py", "BATBlock", "nt_chw",
                        lambda cls, c, t, o: cls(c, r=2, s=_bat_s(o), k=o.get("k", 8), dropout=0.0),
                        "BA-Transform/BAT-Image-Classification @ 89488d3",
                        "sigmoid normalisation (ours: l1)"),
    # BATBlock(in_channels, r=2, s=7, ts=4, k=4, tk=1, dropout=0.2) of the video release: 3-D, time mixed
    # by tk groups of ts x ts matrices; softmax normalisation. At our bat3d defaults: k = 8, tk = 4, ts = T
    # (T <= 8, else 8).
    "bat3d": OfficialSpec("models/non_local.py", "BATBlock", "ncthw",
                          lambda cls, c, t, o: cls(c, r=2, s=_bat_s(o), ts=o.get("ts", min(t, 8)), k=o.get("k", 8),
                                                   tk=o.get("tk", 4), dropout=0.0),
                          "BA-Transform/BAT-Video-Classification @ bc395dc",
                          "softmax normalisation (ours: l1)"),
    # GSM(fPlane, num_segments): the gate-shift module with SAGAN self-attention (Self_Attn) on its output.
    "sagsm": OfficialSpec("gsm.py", "GSM", "nt_chw", lambda cls, c, t, o: cls(c, num_segments=t),
                          "dpstart/SA-GSM @ df251b3",
                          "its shifts build torch.cuda.FloatTensor zeros: runs on CUDA only; its value conv maps "
                          "C -> C (our row: value=\"paper\", C -> C/8 -> C)"),
}


def parse_official(values: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` or ``DIR`` arguments -> {spec name: repository root}; a clear error for a bad one."""
    found: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            name, folder = "", value
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise ConfigError(f"--official {value!r}: {root} is not a directory (expected a fetched repository)")
        if name:
            if name not in OFFICIAL:
                raise ConfigError(f"--official {value!r}: unknown module {name!r}; expected one of "
                                  f"{', '.join(OFFICIAL)}")
            if not _defines_class(root, name):
                raise ConfigError(f"--official {value!r}: {root / OFFICIAL[name].path} not found or without "
                                  f"class {OFFICIAL[name].cls} (expected {OFFICIAL[name].source})")
            found[name] = root
            continue
        matches = [key for key in OFFICIAL if _defines_class(root, key)]
        if not matches:
            raise ConfigError(f"--official {value!r}: none of {', '.join(s.path for s in OFFICIAL.values())} "
                              f"is in {root}; name the module as NAME=DIR")
        found.update({key: root for key in matches})
    return found


def _defines_class(root: Path, name: str) -> bool:
    """True when ``root`` holds the spec's file and it defines the spec's class (two releases name their
    module file ``gsm.py``)."""
    spec = OFFICIAL[name]
    file = root / spec.path
    if not file.is_file():
        return False
    return re.search(rf"^class\s+{re.escape(spec.cls)}\b", file.read_text(errors="replace"), re.MULTILINE) is not None


def load_official(name: str, root: Path) -> type:
    """The released class, imported from ``root`` (its own folder and the repository on sys.path).

    The file is loaded as a module of a stand-in package whose path is the file's folder, so its
    relative imports (``from .depthwise_conv import ...``) find their siblings without running the
    repository's own ``__init__.py`` (which may import training code)."""
    spec = OFFICIAL[name]
    file = root / spec.path
    added = [str(root), str(file.parent)]
    package_name = f"_official_{name}"
    package = types.ModuleType(package_name)
    package.__path__ = [str(file.parent)]
    sys.path[:0] = added
    sys.modules[package_name] = package
    try:
        module_spec = importlib.util.spec_from_file_location(f"{package_name}.{file.stem}", file)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    finally:
        for entry in added:
            sys.path.remove(entry)
        for key in [k for k in sys.modules if k == package_name or k.startswith(package_name + ".")]:
            del sys.modules[key]
    if not hasattr(module, spec.cls):
        raise ConfigError(f"--official {name}={root}: {file} has no class {spec.cls!r}")
    return getattr(module, spec.cls)


# ----------------------------------------------------------------------------------------------------
# timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 switched on only for ``fp32_tf32`` (and restored); bf16 autocast for ``bf16``."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "fp32_tf32"
    try:
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, precision: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Median forward + backward milliseconds of ``module`` on ``x`` and, on CUDA, the peak MiB."""
    device = x.device
    x = x.detach().requires_grad_(True)
    weight: torch.Tensor | None = None
    times = []
    peak = None
    for index in range(warmup + repeats):
        module.zero_grad(set_to_none=True)
        x.grad = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        with precision_context(precision, device):
            out = module(x)
        if weight is None:
            weight = torch.randn(out.shape, device=device, generator=torch.Generator(device).manual_seed(1))
        (out.float() * weight).sum().backward()
        synchronize(device)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
            if device.type == "cuda":
                peak = max(peak or 0.0, torch.cuda.max_memory_allocated(device) / 2**20)
    return {"ms": statistics.median(times), "peak_mib": peak}


@contextlib.contextmanager
def recorded_attention_choices(into: set[str]) -> Iterator[None]:
    """Adds to ``into`` every path ``softmax_attention(impl="auto")`` takes meanwhile."""
    from videoattn.blocks import _attention

    original = _attention._auto_impl

    def recording(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
        choice = original(q, k, v)
        into.add(choice)
        return choice

    _attention._auto_impl = recording
    try:
        yield
    finally:
        _attention._auto_impl = original


def build_ours(row: BlockRow, frames: int) -> nn.Module:
    if row.block == "conv3d":
        return nn.Conv3d(row.c, row.c, 3, padding=1, bias=False)
    from videoattn.blocks import create

    return create(row.block, row.c, num_frames=frames, **row.options)


def run_blocks(rows: list[BlockRow], official: dict[str, Path], device: torch.device, clips: int, frames: int,
               warmup: int, repeats: int) -> list[dict[str, Any]]:
    results = []
    for row in rows:
        torch.manual_seed(0)
        video = torch.randn(clips, row.c, frames, row.h, row.w, device=device)
        entry: dict[str, Any] = {"label": row.label, "block": row.block, "channels": row.c, "frames": frames,
                                 "size": [row.h, row.w], "clips": clips, "ours": {}, "official": None}
        module = build_ours(row, frames).to(device).train()
        for precision in PRECISIONS:
            choices: set[str] = set()
            with recorded_attention_choices(choices):
                entry["ours"][precision] = time_fwd_bwd(module, video, precision, warmup, repeats)
            if choices:  # the path(s) attention_impl="auto" took, to check the per-device rule
                entry["ours"][precision]["auto_attention"] = sorted(choices)
        if row.official and row.official in official:
            spec = OFFICIAL[row.official]
            entry["official"] = {"name": row.official, "source": spec.source, "layout": spec.layout}
            if spec.note:
                entry["official"]["note"] = spec.note
            try:
                torch.manual_seed(0)
                theirs = spec.build(load_official(row.official, official[row.official]), row.c, frames,
                                    dict(row.options))
                theirs = theirs.to(device).train()
                feed = (video if spec.layout == "ncthw"
                        else video.transpose(1, 2).reshape(clips * frames, row.c, row.h, row.w).contiguous())
                for precision in PRECISIONS:
                    entry["official"][precision] = time_fwd_bwd(theirs, feed, precision, warmup, repeats)
            except Exception as error:  # recorded, not fatal: released code may need CUDA or other packages
                message = str(error).splitlines()[0][:300] if str(error) else ""
                entry["official"]["error"] = f"{type(error).__name__}: {message}" + (
                    f" ({spec.note})" if spec.note else "")
        results.append(entry)
        print(f"  {row.label}: " + ", ".join(f"{p} {entry['ours'][p]['ms']:.2f} ms" for p in PRECISIONS),
              file=sys.stderr)
    return results


# ----------------------------------------------------------------------------------------------------
# whole models

#: (preset, its trunk: the same preset with no blocks); trunks are rows too.
MODELS = [("r2d50", None), ("r2d50_nl", "r2d50"), ("r2d50_gta", "r2d50"), ("tsm50", None),
          ("tsm50_rnl", "tsm50"), ("tsn50_rsa", "tsm50"), ("bninception", None),
          ("bninception_sagsm", "bninception"), ("c2d50", None), ("c2d50_bat3d", "c2d50"),
          ("slowfast50", None), ("slowfast50_gta", "slowfast50")]


#: Frames per clip where a model's own input differs from ``--frames`` (SlowFast: 32-frame clips, the
#: slow pathway's 4 after its stride of 8, as issue 25's SlowFast figure was taken).
MODEL_FRAMES = {"slowfast50": 32, "slowfast50_gta": 32}


def tiny_options(name: str) -> dict[str, Any]:
    options: dict[str, Any] = {"base_channels": 8}
    if "bat" in name:
        options["block_options"] = {"s": 2}
    return options


def run_models(device: torch.device, batch: int, frames: int, size: int, warmup: int, repeats: int,
               tiny: bool) -> list[dict[str, Any]]:
    from videoattn.analysis.complexity import count_macs
    from videoattn.analysis.speed import TrainingStep

    precision = "bf16"
    results = []
    for name, trunk in MODELS:
        options = tiny_options(name) if tiny else {}
        case = TrainingStep(name, precision=precision, batch=batch, frames=frames if tiny else MODEL_FRAMES.get(
            name, frames), size=size, channels_last=True, device=device, **options)
        for _ in range(warmup):
            case.step()
        step = statistics.median(case.step() for _ in range(repeats))
        clip = case.inputs[:1]
        case.model.eval()
        macs = count_macs(case.model, clip, convention="fvcore")
        clip_frames = clip.shape[2]
        results.append({"model": name, "trunk": trunk, "precision": precision, "channels_last": True,
                        "batch": batch, "frames": clip_frames, "size": size, "step_s": step,
                        "frames_per_s": batch * clip_frames / step, "gmacs_per_clip": macs / 1e9})
        print(f"  {name}: {batch * clip_frames / step:,.0f} frames/s", file=sys.stderr)
        del case
    by_name = {r["model"]: r for r in results}
    for r in results:  # the target: step ratio over the trunk's <= 1.2 x the MAC ratio
        if r["trunk"]:
            base = by_name[r["trunk"]]
            r["step_over_trunk"] = r["step_s"] / base["step_s"]
            r["macs_over_trunk"] = r["gmacs_per_clip"] / base["gmacs_per_clip"]
    if importlib.util.find_spec("torchvision") is not None:
        results.append(torchvision_row(device, batch * frames, size, warmup, repeats))
    return results


def run_compiled(names: list[str], backend: str, device: torch.device, batch: int, frames: int, size: int,
                 warmup: int, repeats: int, tiny: bool) -> list[dict[str, Any]]:
    """``model.compile``'s gain per preset (issue 25): the same bf16 channels-last engine step eager, then
    after ``nn.Module.compile(backend=...)`` in place, as the engine compiles (``engine.builders.build_model``).
    The first compiled step (tracing + code generation) is reported as ``compile_s``."""
    from videoattn.analysis.speed import TrainingStep

    results = []
    for name in names:
        options = tiny_options(name) if tiny else {}
        case = TrainingStep(name, precision="bf16", batch=batch, frames=frames if tiny else MODEL_FRAMES.get(
            name, frames), size=size, channels_last=True, device=device, **options)
        for _ in range(warmup):
            case.step()
        eager = statistics.median(case.step() for _ in range(repeats))
        case.model.compile(backend=backend)
        compile_s = case.step()
        for _ in range(warmup):
            case.step()
        compiled = statistics.median(case.step() for _ in range(repeats))
        results.append({"model": name, "backend": backend, "precision": "bf16", "channels_last": True,
                        "batch": batch, "eager_step_s": eager, "compiled_step_s": compiled,
                        "speedup": eager / compiled, "compile_s": compile_s})
        print(f"  {name} compiled ({backend}): {eager / compiled:.2f}x, compile {compile_s:.0f} s", file=sys.stderr)
        del case
    return results


def torchvision_row(device: torch.device, images: int, size: int, warmup: int, repeats: int) -> dict[str, Any]:
    """torchvision ResNet-50 trained the same way (bf16 autocast, channels-last, fused SGD): images/s."""
    import torchvision

    from videoattn.config import TrainConfig
    from videoattn.engine.precision import Precision, training_step
    from videoattn.engine.trainer import build_optimizer

    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=174).to(device, memory_format=torch.channels_last).train()
    inputs = torch.randn(images, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(images, device=device) % 174
    optimizer = build_optimizer(list(model.parameters()), TrainConfig(lr=0.01, momentum=0.9, weight_decay=1e-4))
    precision = Precision.resolve("bf16", device)
    criterion = nn.CrossEntropyLoss()

    def step() -> float:
        synchronize(device)
        start = time.perf_counter()
        float(training_step(model, inputs, labels, criterion, optimizer, precision, None))
        return time.perf_counter() - start

    for _ in range(warmup):
        step()
    seconds = statistics.median(step() for _ in range(repeats))
    return {"model": "torchvision_resnet50", "trunk": None, "precision": "bf16", "channels_last": True,
            "batch": images, "frames": 1, "size": size, "step_s": seconds, "frames_per_s": images / seconds,
            "gmacs_per_clip": None}


# ----------------------------------------------------------------------------------------------------
# report


def markdown(report: dict[str, Any]) -> str:
    def ms(value: dict | None, precision: str) -> str:
        if not value:
            return "—"
        if "error" in value and precision not in value:
            return "error"
        return f"{value[precision]['ms']:.2f}" if precision in value else "—"

    device = report["device"]
    lines: list[str] = []
    if report.get("blocks"):
        lines += [f"Blocks, fwd+bwd, {report['clips']} clips x {report['frames']} frames, median of "
                  f"{report['repeats']} ({device}; ms)", "",
                  "| block, site | official fp32 | ours fp32 | official fp32+TF32 | ours fp32+TF32 | official bf16 "
                  "| ours bf16 |",
                  "|---|---|---|---|---|---|---|"]
    for row in report.get("blocks", []):
        cells = []
        for precision in PRECISIONS:
            cells += [ms(row["official"], precision), ms(row["ours"], precision)]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    if report.get("attention_paths"):
        lines += attention_markdown(report)
    if report.get("models"):
        lines += ["", f"Whole models, training, bf16 autocast, channels-last, fused SGD ({device})", "",
                  "| model | frames/s | GMACs / clip | step / trunk's | MACs / trunk's |", "|---|---|---|---|---|"]
        for row in report["models"]:
            gmacs = f"{row['gmacs_per_clip']:.3g}" if row.get("gmacs_per_clip") is not None else "—"
            ratio = (f"{row['step_over_trunk']:.2f}x", f"{row['macs_over_trunk']:.2f}x") if "step_over_trunk" in row \
                else ("—", "—")
            lines.append(f"| {row['model']} | {row['frames_per_s']:,.0f} | {gmacs} | {ratio[0]} | {ratio[1]} |")
    if report.get("compiled"):
        lines += ["", f"model.compile, training step, bf16, channels-last ({device})", "",
                  "| model | backend | eager step | compiled step | speed-up | first compiled step |",
                  "|---|---|---|---|---|---|"]
        for row in report["compiled"]:
            lines.append(f"| {row['model']} | {row['backend']} | {row['eager_step_s'] * 1e3:.1f} ms | "
                         f"{row['compiled_step_s'] * 1e3:.1f} ms | {row['speedup']:.2f}x | {row['compile_s']:.1f} s |")
    return "\n".join(lines)


def attention_markdown(report: dict[str, Any]) -> list[str]:
    """NL's ``auto`` row (with the path it took) beside the forced ``explicit`` and ``sdpa`` rows: ms and
    peak MiB (CUDA) per precision, the check of ``choose_attention_impl``'s table."""

    def cell(result: dict[str, Any], precision: str, with_choice: bool) -> str:
        value = result[precision]
        peak = f", {value['peak_mib']:.0f} MiB" if value.get("peak_mib") is not None else ""
        choice = f" ({'/'.join(value['auto_attention'])})" if with_choice and value.get("auto_attention") else ""
        return f"{value['ms']:.2f} ms{peak}{choice}"

    lines = ["", "NL attention paths, fwd+bwd (ms, peak memory on CUDA; auto: the path it took)", "",
             "| NL, path | fp32 | fp32+TF32 | bf16 |", "|---|---|---|---|"]
    auto_rows = {row["label"]: row for row in report["blocks"] if row["block"] == "nl"}
    for site in ("res3", "res4"):
        if f"NL {site}" in auto_rows:
            lines.append(f"| NL {site} auto | " + " | ".join(
                cell(auto_rows[f"NL {site}"]["ours"], p, True) for p in PRECISIONS) + " |")
        for row in report["attention_paths"]:
            if row["label"].startswith(f"NL {site} "):
                lines.append(f"| {row['label']} | " + " | ".join(cell(row["ours"], p, False) for p in PRECISIONS)
                             + " |")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="toy shapes and 1 repetition (a smoke test, any device)")
    parser.add_argument("--official", action="append", default=[], metavar="NAME=DIR",
                        help=f"a fetched official repository (NAME: {', '.join(OFFICIAL)}; repeatable)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (10; --tiny: 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (3; --tiny: 0)")
    parser.add_argument("--clips", type=int, default=None, help="clips per block batch (8; --tiny: 1)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--model-batch", type=int, default=None, help="clips per model step (32; --tiny: 1)")
    parser.add_argument("--size", type=int, default=None, help="model input size (224; --tiny: 64)")
    parser.add_argument("--skip-models", action="store_true", help="no whole-model rows")
    parser.add_argument("--skip-blocks", action="store_true", help="no block or attention-path rows")
    parser.add_argument("--compile", default="", metavar="PRESETS",
                        help="comma-separated presets whose model.compile gain to measure (eager vs compiled "
                             "step; each compiles for a minute or more on a GPU; default none)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/gpu.json on CUDA)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.py: --device cuda but no CUDA device is available (use --device cpu --tiny to try it)")
    official = parse_official(args.official)
    compile_names = [n for n in args.compile.split(",") if n]
    if compile_names:  # an unknown preset or backend is a one-line error before any timing
        from videoattn.engine.builders import check_compile_backend
        from videoattn.models import get_preset

        for name in compile_names:
            get_preset(name)
        check_compile_backend(args.compile_backend)
    tiny = args.tiny
    repeats = args.repeats or (1 if tiny else 10)
    warmup = args.warmup if args.warmup is not None else (0 if tiny else 3)
    clips = args.clips or (1 if tiny else 8)
    model_batch = args.model_batch or (1 if tiny else 32)
    size = args.size or (64 if tiny else 224)
    out = Path(args.out) if args.out else (DEFAULT_OUTPUT if device.type == "cuda" else None)
    if out is not None and out.resolve() == DEFAULT_OUTPUT.resolve() and device.type != "cuda":
        raise SystemExit(f"gpu.py: {DEFAULT_OUTPUT} holds GPU numbers; write CPU runs elsewhere with --out")

    report: dict[str, Any] = {
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"),
        "torch": torch.__version__, "cuda": torch.version.cuda, "tiny": tiny, "repeats": repeats, "warmup": warmup,
        "clips": clips, "frames": args.frames, "precisions": list(PRECISIONS),
        "official": {name: str(path) for name, path in official.items()},
    }

    def save(final: bool = False) -> None:
        """Write what is measured so far (after every section: a run stopped by a time limit keeps it)."""
        table = markdown(report)
        report["markdown"] = table
        report["complete"] = final
        if final:
            print(table)
        if out is not None:
            from videoattn.utils.io import atomic_write_json

            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out, report)
            if final:
                print(f"wrote {out}", file=sys.stderr)

    if not args.skip_blocks:
        print("blocks:", file=sys.stderr)
        from videoattn.blocks.kernels import triton_available

        fused = device.type == "cuda" and triton_available()  # Triton rows; on a CPU only the interpreter runs them
        report["fused_kernels"] = "timed (rows '<label> triton')" if fused else "not timed (needs CUDA and triton)"
        report["blocks"] = run_blocks(block_rows(tiny, fused), official, device, clips, args.frames, warmup, repeats)
        save()
        print("attention paths:", file=sys.stderr)
        report["attention_paths"] = run_blocks(attention_rows(tiny), {}, device, clips, args.frames, warmup, repeats)
        save()
    if not args.skip_models:
        print("models:", file=sys.stderr)
        report["models"] = run_models(device, model_batch, args.frames, size, warmup, repeats, tiny)
        if not any(r["model"] == "torchvision_resnet50" for r in report["models"]):
            report["torchvision"] = "not importable: row skipped"
        save()
    if compile_names:
        print("compiled models:", file=sys.stderr)
        report["compiled"] = run_compiled(compile_names, args.compile_backend, device, model_batch, args.frames,
                                          size, warmup, repeats, tiny)
    save(final=True)
    return report


if __name__ == "__main__":
    main()
