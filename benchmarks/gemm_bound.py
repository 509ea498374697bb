"""How close each attention block's training step is to the matrix products it must do (issue 18, part A).

Usage::

    python benchmarks/gemm_bound.py --rounds 5                 # res3 + res4, fp32 (+ bf16 if it pays)
    python benchmarks/gemm_bound.py --only nl --shape res3
    python benchmarks/gemm_bound.py --memory                   # + NL peak memory, fresh processes
    python benchmarks/gemm_bound.py --channels-last            # + ResNet-50 trunk NCHW vs channels-last

For every block below, at the R2D-50 res3 (512 ch, 8x28x28) and res4 (1024 ch, 8x14x14) shapes,
batch 1, block in train mode:

* ``block``: forward + backward time (loss = sum of the output times a fixed random tensor, input
  requiring grad, as in ``benchmarks/blocks.py``);
* ``gemms``: the time of exactly the matrix products the block's equations require, counted by hand
  from the equations (:data:`GEMMS`), each as ``torch.matmul`` at the same shapes in the same dtype:
  the forward product ``(M x K) (K x N)`` and its two backward products ``(M x N) (N x K)`` (input
  gradient) and ``(K x M) (M x N)`` (weight / other-operand gradient). Pooling, softmax, BN, ReLU,
  residual adds and layout changes are NOT counted: they are the overhead the ratio measures.
* ``ratio = block / gemms``; the issue's target is <= 1.5.

The block and its GEMM set are timed alternately, case after case, in ONE process, for ``--rounds``
rounds (the first is a warm-up), so both sample the same background load; the ratio is the median
of the per-round ratios. The machine's 2048^2 GEMM rate (best of 5) is measured before and after.
The Non-local block of the TSM repository (:class:`OfficialNonLocal3D`, a re-implementation of its
computation written here from its published structure, as a timing baseline only) runs in the same
rounds, so ``nl`` / ``gta`` vs the official NL are paired ratios.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from blocks import SHAPES  # noqa: E402  (the harness's res3/res4 shapes)
from videoattn.analysis.speed import matmul_rate  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "gemm_bound.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class OfficialNonLocal3D(nn.Module):
    """Timing baseline: the computation of the TSM repository's ``NONLocalBlock3D`` (embedded
    Gaussian, sub-sampled, with BN), re-implemented from its published structure: 1x1x1 ``Conv3d``
    theta / phi / g to C/2 channels; phi and g followed by ``MaxPool3d((1, 2, 2))``; ``softmax(theta^T
    phi)`` materialised and multiplied by g; the result back to ``(N, C/2, T, H, W)`` and through a
    1x1x1 ``Conv3d`` W and ``BatchNorm3d`` (gamma = beta = 0 at init); ``z = W_y + x``. Not part of
    the library."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 2
        self.inner = inner
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Sequential(nn.Conv3d(channels, inner, 1), nn.MaxPool3d((1, 2, 2)))
        self.g = nn.Sequential(nn.Conv3d(channels, inner, 1), nn.MaxPool3d((1, 2, 2)))
        self.W = nn.Sequential(nn.Conv3d(inner, channels, 1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g_x = self.g(x).reshape(n, self.inner, -1).transpose(1, 2)
        theta_x = self.theta(x).reshape(n, self.inner, -1).transpose(1, 2)
        phi_x = self.phi(x).reshape(n, self.inner, -1)
        weights = F.softmax(torch.matmul(theta_x, phi_x), dim=-1)
        y = torch.matmul(weights, g_x).transpose(1, 2).contiguous().reshape(n, self.inner, *x.shape[2:])
        return self.W(y) + x


# --- the GEMMs each block's equations require: (batch, M, K, N) forward products -----------------------


def _attention_gemms(batch: int, queries: int, keys: int, width: int) -> list[tuple[int, int, int, int]]:
    """softmax(Q K^T) V: the score product and the weighted sum."""
    return [(batch, queries, width, keys), (batch, queries, keys, width)]


def nl_gemms(c, t, h, w):  # NL eq. 1-3, width C/2, keys/values pooled 1x2x2 after phi/g
    positions, width = t * h * w, c // 2
    keys = t * ((h + 1) // 2) * ((w + 1) // 2)
    return [(1, positions, c, 3 * width), *_attention_gemms(1, positions, keys, width), (1, positions, width, c)]


def sa_gemms(c, t, h, w):  # GTA eq. 3, width C/4, keys/values pooled 1x2x2, attention within each frame
    positions, width = t * h * w, c // 4
    keys = ((h + 1) // 2) * ((w + 1) // 2)
    return [(1, positions, c, 3 * width), *_attention_gemms(t, h * w, keys, width), (1, positions, width, c)]


def ta_gemms(c, t, h, w):  # GTA eq. 4, width C/4, attention across the T frames at each position
    positions, width = t * h * w, c // 4
    return [(1, positions, c, 3 * width), *_attention_gemms(h * w, t, t, width), (1, positions, width, c)]


def gta_temporal_gemms(c, t, h, w, region=True, groups=8):  # GTA eq. 5-8, CCMH, region_source="value"
    positions, width, regions = t * h * w, c // 4, c // 8
    # Pixel GTA: V_P = X W_V^P; CCMH mix = a (G T x G T) matrix on (G T) x (HW width/G); W_P^O.
    out = [(1, positions, c, width), (1, groups * t, groups * t, h * w * width // groups), (1, positions, width, c)]
    if region:
        out += [(1, positions, c, width),  # V = X W_V^R
                (1, positions, width, regions),  # G_R(t)^T = V W_G^T
                (t, regions, h * w, width),  # X_G(t) = G_R(t) V(t)
                (1, groups * t, groups * t, regions * width // groups),  # M_R X_G (CCMH)
                (t, h * w, regions, width),  # A_R(t) = G_R(t)^T (M_R X_G)(t)
                (1, positions, width, c)]  # W_R^O
    return out


# label -> (registry name, options, GEMM counter)
GEMMS = {
    "nl": ("nl", {}, nl_gemms),
    "nl/explicit": ("nl", {"attention_impl": "explicit"}, nl_gemms),
    "official_nl": (None, {}, nl_gemms),
    "sa": ("sa", {}, sa_gemms),
    "ta": ("ta", {}, ta_gemms),
    "dnl": ("dnl", {}, lambda *s: sa_gemms(*s) + ta_gemms(*s)),
    "sa+tape": ("tape", {"spatial": True}, lambda *s: sa_gemms(*s) + ta_gemms(*s)),
    "gta": ("gta", {}, lambda *s: sa_gemms(*s) + gta_temporal_gemms(*s)),
    "gta/no_region": ("gta", {"region": False}, lambda *s: sa_gemms(*s) + gta_temporal_gemms(*s, region=False)),
}


def gemm_operands(gemms, dtype):
    """For each forward product its three (forward, input-grad, other-grad) operand pairs."""
    pairs = []
    for batch, m, k, n in gemms:
        a, b, grad = (torch.randn(batch, *shape, dtype=dtype) for shape in ((m, k), (k, n), (m, n)))
        pairs += [(a, b), (grad, b.transpose(1, 2).contiguous()), (a.transpose(1, 2).contiguous(), grad)]
    return pairs


def gemm_macs(gemms) -> int:
    return 3 * sum(b * m * k * n for b, m, k, n in gemms)


def build(label: str, channels: int, frames: int):
    name, options, _ = GEMMS[label]
    torch.manual_seed(0)
    if name is None:
        return OfficialNonLocal3D(channels).train()
    from videoattn.blocks import create, get_block_spec

    needs_frames = get_block_spec(name).needs_num_frames
    return create(name, channels, num_frames=frames if needs_frames else None, **options).train()


def run_shape(labels, shape: str, dtype_name: str, rounds: int, layout: str = "ncthw") -> dict:
    """Block fwd+bwd and its GEMM set, alternating, in this process. ``layout="channels_last"`` feeds
    our blocks a channels_last_3d input (what the trunk hands them with ``model.channels_last``); the
    official NL always gets the contiguous input (its faster layout: measured 1.06-1.14x slower on
    channels-last)."""
    dtype = DTYPES[dtype_name]
    channels, frames, height, width = SHAPES[shape]
    blocks = {label: build(label, channels, frames) for label in labels}
    operands = {label: gemm_operands(GEMMS[label][2](channels, frames, height, width), dtype) for label in labels}
    x = torch.randn(1, channels, frames, height, width, requires_grad=True)
    weights = torch.randn_like(x)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last_3d).requires_grad_(True)
    weights_cl = weights.contiguous(memory_format=torch.channels_last_3d)
    block_times = {label: [] for label in labels}
    gemm_times = {label: [] for label in labels}
    for round_index in range(rounds + 1):
        for label in labels:
            block = blocks[label]
            ours_cl = layout == "channels_last" and label != "official_nl"
            inp, w = (x_cl, weights_cl) if ours_cl else (x, weights)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
                out = block(inp)
            (out.float() * w).sum().backward()
            elapsed = time.perf_counter() - start
            inp.grad = None
            block.zero_grad(set_to_none=True)
            start = time.perf_counter()
            for a, b in operands[label]:
                torch.matmul(a, b)
            gemm_elapsed = time.perf_counter() - start
            if round_index:  # round 0 is a warm-up
                block_times[label].append(elapsed)
                gemm_times[label].append(gemm_elapsed)
    results = {}
    for label in labels:
        bt, gt = block_times[label], gemm_times[label]
        gemms = GEMMS[label][2](channels, frames, height, width)
        results[label] = {
            "label": label, "shape": shape, "dtype": dtype_name, "layout": layout, "rounds": len(bt),
            "block_time_s_median": statistics.median(bt), "block_time_s_min": min(bt),
            "gemm_time_s_median": statistics.median(gt), "gemm_time_s_min": min(gt),
            "ratio_median": round(statistics.median(b / g for b, g in zip(bt, gt)), 3),
            "ratio_of_minima": round(min(bt) / min(gt), 3),
            "gemms": [list(g) for g in gemms], "gemm_gmacs_fwd_bwd": gemm_macs(gemms) / 1e9,
        }
    for reference in ("official_nl", "nl/explicit"):
        if reference not in labels:
            continue
        ref = block_times[reference]
        for label in labels:
            if label != reference:
                results[label][f"vs_{reference.replace('/', '_')}_paired_median"] = round(
                    statistics.median(b / r for b, r in zip(block_times[label], ref)), 3)
    return results


# --- peak memory of NL variants (fresh processes, as benchmarks/blocks.py) ----------------------------


def run_memory(label: str, shape: str) -> dict:
    from videoattn.analysis.speed import peak_rss_bytes

    channels, frames, height, width = SHAPES[shape]
    block = build(label, channels, frames)
    x = torch.randn(1, channels, frames, height, width, requires_grad=True)
    tiny = torch.randn(1, channels, frames, 4, 4, requires_grad=True)
    block(tiny).sum().backward()
    block.zero_grad(set_to_none=True)
    del tiny
    baseline = peak_rss_bytes()
    (block(x) * torch.randn_like(x)).sum().backward()
    return {"label": label, "shape": shape, "peak_memory_mib": (peak_rss_bytes() - baseline) / 2**20}


# --- ResNet-50 trunk, NCHW vs channels-last ------------------------------------------------------------


def run_channels_last(dtype_name: str, rounds: int, frames: int = 16, size: int = 224) -> dict:
    """Forward+backward of the R2D-50 trunk on ``frames`` images (batch 2 x 8 frames), NCHW vs
    channels-last (model and input converted), alternating, in this process."""
    from videoattn.backbones.resnet import ResNet

    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    models = {"nchw": ResNet(50).train()}
    torch.manual_seed(0)
    models["channels_last"] = ResNet(50).train().to(memory_format=torch.channels_last)
    x = torch.randn(frames, 3, size, size)
    inputs = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
    times = {key: [] for key in models}
    for round_index in range(rounds + 1):
        for key, model in models.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is torch.bfloat16):
                out, _ = model(inputs[key])
            out.float().sum().backward()
            model.zero_grad(set_to_none=True)
            if round_index:
                times[key].append(time.perf_counter() - start)
    return {"dtype": dtype_name, "frames": frames, "size": size, "rounds": rounds,
            **{f"{key}_time_s_median": statistics.median(t) for key, t in times.items()},
            **{f"{key}_time_s_min": min(t) for key, t in times.items()},
            "channels_last_vs_nchw_paired_median": round(statistics.median(
                c / n for c, n in zip(times["channels_last"], times["nchw"])), 3)}


# --- driver --------------------------------------------------------------------------------------------


def _child(kind: str, payload: dict, threads: int, timeout: int) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps({"kind": kind, **payload}), "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    if kind == "memory":
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")  # RSS follows live memory (benchmarks/blocks.py)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1], **payload}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="labels containing this (official_nl always runs)")
    parser.add_argument("--shape", action="append", choices=("res3", "res4"))
    parser.add_argument("--dtype", action="append", choices=sorted(DTYPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--layout", action="append", choices=("ncthw", "channels_last"),
                        help="input layout of our blocks (default ncthw; channels_last: as with model.channels_last)")
    parser.add_argument("--memory", action="store_true", help="also NL / official peak memory (fresh processes)")
    parser.add_argument("--channels-last", action="store_true", help="also the ResNet-50 trunk NCHW vs channels-last")
    parser.add_argument("--min-bf16-rate", type=float, default=0.25,
                        help="skip bf16 cases when the bf16 GEMM rate is below this fraction of fp32's")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.child:
        job = json.loads(args.child)
        kind = job.pop("kind")
        if kind == "shape":
            result = run_shape(job["labels"], job["shape"], job["dtype"], job["rounds"], job["layout"])
        elif kind == "memory":
            result = run_memory(job["label"], job["shape"])
        else:
            result = run_channels_last(job["dtype"], job["rounds"])
        print(json.dumps(result))
        return 0

    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    rate_before = {name: matmul_rate(dtype) for name, dtype in DTYPES.items()}
    print(f"GEMM rate before: {rate_before}", flush=True)
    dtypes = args.dtype or list(DTYPES)
    skipped = {}
    if "bf16" in dtypes and rate_before["bf16"] < args.min_bf16_rate * rate_before["fp32"]:
        skipped["bf16"] = (f"bf16 GEMM runs at {rate_before['bf16']:.1f} GFLOP/s here vs fp32 "
                           f"{rate_before['fp32']:.1f} (no native bf16 matmul on this CPU): bf16 autocast "
                           f"cannot pay, its block timings would measure the fallback kernel")
        dtypes = [d for d in dtypes if d != "bf16"]
        print(f"skipping bf16: {skipped['bf16']}", flush=True)
    labels = [label for label in GEMMS if not args.only or label == "official_nl" or any(o in label for o in args.only)]
    results = {(r["label"], r["shape"], r["dtype"], r.get("layout", "ncthw")): r for r in report.get("results", [])}
    shapes, layouts = args.shape or ("res3", "res4"), args.layout or ["ncthw"]
    for dtype_name, layout, shape in itertools.product(dtypes, layouts, shapes):
        job = {"labels": labels, "shape": shape, "dtype": dtype_name, "rounds": args.rounds, "layout": layout}
        out = _child("shape", job, args.threads, args.timeout)
        if "error" in out:
            print(f"{shape} {dtype_name} {layout}: ERROR {out['error']}", flush=True)
            continue
        for label, r in out.items():
            results[(label, shape, dtype_name, layout)] = r
            print(f"{shape} {dtype_name} {layout} {label:14s} block {r['block_time_s_median']:.3f} s  gemms "
                  f"{r['gemm_time_s_median']:.3f} s  ratio {r['ratio_median']:.2f}  "
                  f"vs official {r.get('vs_official_nl_paired_median', '-')}", flush=True)
    memory = {(m["label"], m["shape"]): m for m in report.get("memory", [])}
    if args.memory:
        for shape in shapes:
            for label in ("nl", "nl/explicit", "official_nl"):
                m = _child("memory", {"label": label, "shape": shape}, args.threads, args.timeout)
                memory[(label, shape)] = m
                print(f"memory {shape} {label}: {m.get('peak_memory_mib', m.get('error'))}", flush=True)
    channels_last = {r["dtype"]: r for r in report.get("channels_last", [])}
    if args.channels_last:
        for dtype_name in dtypes:
            r = _child("channels_last", {"dtype": dtype_name, "rounds": max(2, args.rounds // 2)}, args.threads,
                       args.timeout)
            channels_last[dtype_name] = r
            print(f"channels-last {dtype_name}: {r}", flush=True)
    rate_after = {name: matmul_rate(dtype) for name, dtype in DTYPES.items()}
    print(f"GEMM rate after: {rate_after}", flush=True)

    from videoattn.utils.io import atomic_write_json

    report = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "threads": args.threads, "batch": 1, "load_average_at_end": os.getloadavg()},
        "method": "block fwd+bwd and exactly its GEMMs (fwd + 2 bwd products each, torch.matmul) alternated "
                  "in one process per shape/dtype; ratio = median of per-round ratios; official_nl paired "
                  "in the same rounds",
        "gemm_rate_gflops_before": rate_before, "gemm_rate_gflops_after": rate_after,
        "skipped": {**report.get("skipped", {}), **skipped},
        "results": sorted(results.values(), key=lambda r: (r["dtype"], r.get("layout", "ncthw"), r["shape"],
                                                           list(GEMMS).index(r["label"]))),
        "memory": list(memory.values()),
        "channels_last": list(channels_last.values()),
    }
    atomic_write_json(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
