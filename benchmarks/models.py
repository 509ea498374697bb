"""Whole-model training-step throughput: achieved GMAC/s of fwd+bwd against the machine's fp32 GEMM rate.

For each model, one training step is forward + loss + backward on a random clip (model in train mode,
cross-entropy on random labels, gradients cleared between steps; no optimizer update, which is
parameter-sized and negligible next to the convolutions). The work of a step is taken as 3x the
forward MACs per clip (fvcore convention, counted on the meta device): backward computes the gradients
with respect to the inputs and to the weights, each about one forward's MACs. So

    achieved GMAC/s = 3 * forward GMACs per clip * clips per step / step time

and it is reported as a fraction of the machine's fp32 GEMM rate, measured in the same process with
the same number of threads (a 2048 x 2048 x 2048 matmul, best of several) before and after the cases.

The models are timed interleaved, step by step (round r times every model once), so they sample the
same background load on a shared machine, after one warm-up step per model on a smaller clip. Per
model the median and the minimum step time are reported; the ratios between models come from the
same rounds.

    python benchmarks/models.py                      # SlowFast-R50 and R2D-50, with and without GTA
    python benchmarks/models.py --rounds 4 --batch 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "models_slowfast.json"

# label -> (preset, model input frames, what the label means). "8x224": 8 frames per clip for R2D-50;
# SlowFast's slow pathway sees the same 8 frames (32 fast-pathway frames, alpha = 4, the presets' alpha),
# so the GTA blocks of both models sit on T = 8 maps.
MODELS = {
    "slowfast50": ("slowfast50", 32, "SlowFast-R50, 8 slow / 32 fast frames (alpha 4), 224x224"),
    "slowfast50_gta": ("slowfast50_gta", 32, "SlowFast-R50 + five GTA blocks in the slow pathway (T = 8)"),
    "r2d50": ("r2d50", 8, "R2D-50, 8 frames, 224x224"),
    "r2d50_gta": ("r2d50_gta", 8, "R2D-50 + five GTA blocks (T = 8)"),
}


def gemm_gmacs_per_second(size: int = 2048, repeats: int = 5) -> dict:
    """fp32 ``size^3`` matmul rate with the current torch thread count: best of ``repeats`` (after one
    warm-up), in GMAC/s (one multiply-add per inner-product term)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    return {"size": size, "repeats": repeats, "best_s": best, "median_s": median,
            "gmacs_per_s_best": size**3 / best / 1e9, "gmacs_per_s_median": size**3 / median / 1e9}


def forward_gmacs(preset: str, frames: int, size: int) -> float:
    from videoattn.analysis.complexity import profile_model

    return profile_model(preset, num_frames=frames, size=size).macs / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], choices=sorted(MODELS), help="models to time")
    parser.add_argument("--batch", type=int, default=1, help="clips per step")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (after one warm-up step per model)")
    parser.add_argument("--warmup-size", type=int, default=112,
                        help="side of the warm-up clip (first-call allocations and kernel set-up; a full-size "
                             "warm-up step costs as much as a timed one)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (GEMM and models)")
    parser.add_argument("--gemm-repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    from videoattn.models import create_model
    from videoattn.utils.io import atomic_write_json

    torch.set_num_threads(args.threads)
    labels = args.only or list(MODELS)
    gemm_before = gemm_gmacs_per_second(repeats=args.gemm_repeats)
    print(f"GEMM before: {gemm_before['gmacs_per_s_best']:.1f} GMAC/s (best)", flush=True)

    models, inputs, macs = {}, {}, {}
    for label in labels:
        preset, frames, _ = MODELS[label]
        macs[label] = forward_gmacs(preset, frames, args.size)
        torch.manual_seed(0)
        models[label] = create_model(preset, num_frames=frames).train()
        inputs[label] = torch.randn(args.batch, 3, frames, args.size, args.size)
    criterion = nn.CrossEntropyLoss()
    for label in labels:  # warm-up, not timed
        clip = inputs[label][..., :args.warmup_size, :args.warmup_size]
        criterion(models[label](clip), torch.zeros(args.batch, dtype=torch.long)).backward()
        models[label].zero_grad(set_to_none=True)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for round_index in range(1, args.rounds + 1):
        for label in labels:
            model, clip = models[label], inputs[label]
            target = torch.zeros(args.batch, dtype=torch.long)
            start = time.perf_counter()
            criterion(model(clip), target).backward()
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            times[label].append(elapsed)
            print(f"[round {round_index}] {label:16s} {elapsed:.2f} s", flush=True)
    gemm_after = gemm_gmacs_per_second(repeats=args.gemm_repeats)
    print(f"GEMM after: {gemm_after['gmacs_per_s_best']:.1f} GMAC/s (best)", flush=True)
    gemm_best = max(gemm_before["gmacs_per_s_best"], gemm_after["gmacs_per_s_best"])

    results = []
    for label in labels:
        preset, frames, description = MODELS[label]
        t_med, t_min = statistics.median(times[label]), min(times[label])
        work = 3 * macs[label] * args.batch
        results.append({
            "label": label, "preset": preset, "description": description, "input_shape": [args.batch, 3, frames,
                                                                                         args.size, args.size],
            "params": sum(p.numel() for p in models[label].parameters()),
            "gmacs_forward_per_clip": macs[label], "gmacs_per_step_3x_forward": work,
            "step_s_median": t_med, "step_s_min": t_min, "step_s_all": times[label],
            "achieved_gmacs_per_s_median": work / t_med, "achieved_gmacs_per_s_best": work / t_min,
            "fraction_of_gemm_median": work / t_med / gemm_best, "fraction_of_gemm_best": work / t_min / gemm_best,
        })
    by_label = {r["label"]: r for r in results}
    ratios = {}
    for a, b in (("slowfast50_gta", "slowfast50"), ("r2d50_gta", "r2d50"), ("slowfast50", "r2d50"),
                 ("slowfast50_gta", "r2d50_gta")):
        if a in by_label and b in by_label:
            ratios[f"{a} vs {b}"] = {
                "step_time_ratio_median": round(by_label[a]["step_s_median"] / by_label[b]["step_s_median"], 3),
                "step_time_ratio_min": round(by_label[a]["step_s_min"] / by_label[b]["step_s_min"], 3),
                "macs_ratio": round(by_label[a]["gmacs_forward_per_clip"] / by_label[b]["gmacs_forward_per_clip"], 3),
            }
    report = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "threads": torch.get_num_threads(), "batch": args.batch, "size": args.size,
                        "rounds": args.rounds, "load_average_at_end": os.getloadavg()},
        "gemm": {"before": gemm_before, "after": gemm_after, "best_gmacs_per_s": gemm_best},
        "results": results,
        "ratios": ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, report)
    print("| model | fwd GMACs/clip | step s (median / min) | achieved GMAC/s (median / best) "
          "| of GEMM (median / best) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['gmacs_forward_per_clip']:.1f} | "
              f"{r['step_s_median']:.2f} / {r['step_s_min']:.2f} | "
              f"{r['achieved_gmacs_per_s_median']:.1f} / {r['achieved_gmacs_per_s_best']:.1f} | "
              f"{r['fraction_of_gemm_median']:.2f} / {r['fraction_of_gemm_best']:.2f} |")
    print(f"GEMM best {gemm_best:.1f} GMAC/s (before {gemm_before['gmacs_per_s_best']:.1f}, "
          f"after {gemm_after['gmacs_per_s_best']:.1f})")
    print(json.dumps(ratios, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
