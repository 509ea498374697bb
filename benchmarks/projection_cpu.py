"""The measurement behind the ``onednn_conv`` projection layout on CPU (``blocks._attention.projection_layout``).

On an x86 CPU that is not Intel's but has AVX-512 (AMD Zen 4/5), MKL, which runs PyTorch's float32
matrix products, uses its AVX2 kernels while oneDNN, which runs PyTorch's convolutions, uses AVX-512.
This script measures, on the machine it runs on, the blocks' projections as MKL products (``bmm``: the
token view with BLAS transpose flags, or ``F.linear``) against the same products as oneDNN 1x1
convolutions (``onednn``), chosen with ``VIDEOATTN_PROJECTION``, in one run:

* the raw rates: a 2048^2 ``torch.mm`` and a 1x1 convolution of the same work (GFLOP/s, best of 5);
* ``benchmarks/gemm_bound.py`` (every attention block at the R2D-50 res3/res4 shapes, fwd+bwd, paired
  with the TSM repository's Non-local re-implementation), fp32, in the NCTHW and channels-last input
  layouts, alternating the two settings run after run (``--runs`` each);
* whole training steps of R2D-50 + NL and R2D-50 + GTA (fp32, 8 x 224, batch 2, as the engine runs
  them), NCHW and channels-last, the setting switched between interleaved steps of the same model.

    python benchmarks/projection_cpu.py [--runs 2] [--rounds 3] [--out benchmarks/results/projection_onednn_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from videoattn.analysis.speed import TrainingStep  # noqa: E402
from videoattn.blocks._attention import cpu_gemm_prefers_onednn, cpu_vendor  # noqa: E402

SETTINGS = ("bmm", "onednn")
MODELS = ("r2d50_nl", "r2d50_gta")


def best_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_rates() -> dict:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    image = b.view(1, 2048, 1, 2048).contiguous(memory_format=torch.channels_last)
    kernel = a[:, :, None, None].contiguous(memory_format=torch.channels_last)
    flops = 2 * 2048**3
    return {"mm_gflops": flops / best_seconds(lambda: torch.mm(a, b)) / 1e9,
            "conv1x1_gflops": flops / best_seconds(lambda: torch.nn.functional.conv2d(image, kernel)) / 1e9}


def gemm_bound_runs(runs: int, threads: int) -> dict:
    """Medians over ``runs`` alternating runs of gemm_bound.py per setting and layout."""
    rows: dict = {}
    for layout in ("ncthw", "channels_last"):
        for _ in range(runs):
            for setting in SETTINGS:
                with tempfile.TemporaryDirectory() as scratch:
                    out = Path(scratch) / "gemm_bound.json"
                    env = {**os.environ, "VIDEOATTN_PROJECTION": setting}
                    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gemm_bound.py"), "--dtype", "fp32",
                                    "--rounds", "5", "--threads", str(threads), "--layout", layout,
                                    "--output", str(out)], env=env, check=True, capture_output=True)
                    for r in json.loads(out.read_text())["results"]:
                        key = f"{r['shape']} {layout} {r['label']}"
                        entry = rows.setdefault(key, {s: {"block_s": [], "vs_official_nl": []} for s in SETTINGS})
                        entry[setting]["block_s"].append(r["block_time_s_median"])
                        if r.get("vs_official_nl_paired_median") is not None:
                            entry[setting]["vs_official_nl"].append(r["vs_official_nl_paired_median"])
    summary = {}
    for key, entry in rows.items():
        med = {s: {k: (statistics.median(v) if v else None) for k, v in entry[s].items()} for s in SETTINGS}
        summary[key] = {**{f"{s}_{k}": v for s in SETTINGS for k, v in med[s].items()},
                        "onednn_over_bmm": med["onednn"]["block_s"] / med["bmm"]["block_s"],
                        "runs": entry}
        print(f"{key:38s} bmm {med['bmm']['block_s']:.3f} s  onednn {med['onednn']['block_s']:.3f} s  "
              f"({summary[key]['onednn_over_bmm']:.2f}x)", file=sys.stderr)
    return summary


def model_steps(rounds: int) -> dict:
    out = {}
    for name in MODELS:
        for channels_last in (False, True):
            step = TrainingStep(name, precision="fp32", batch=2, frames=8, size=224, channels_last=channels_last)
            best = {s: float("inf") for s in SETTINGS}
            for setting in SETTINGS:  # warm-up, both paths' oneDNN primitives created
                os.environ["VIDEOATTN_PROJECTION"] = setting
                step.step()
            for _ in range(rounds):
                for setting in SETTINGS:
                    os.environ["VIDEOATTN_PROJECTION"] = setting
                    best[setting] = min(best[setting], step.step())
            key = f"{name} 8x224 b2 {'channels_last' if channels_last else 'nchw'}"
            out[key] = {"bmm_s": best["bmm"], "onednn_s": best["onednn"],
                        "onednn_over_bmm": best["onednn"] / best["bmm"]}
            print(f"{key:38s} bmm {best['bmm']:.2f} s  onednn {best['onednn']:.2f} s  "
                  f"({out[key]['onednn_over_bmm']:.2f}x)", file=sys.stderr)
            del step
    os.environ.pop("VIDEOATTN_PROJECTION", None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="gemm_bound.py runs per setting and layout")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved training steps per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"environment": {"torch": torch.__version__, "python": platform.python_version(),
                              "cpu_vendor": cpu_vendor(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                              "threads": args.threads, "rule_picks_onednn": cpu_gemm_prefers_onednn()},
              "rates_before": raw_rates()}
    print(f"rates: {result['rates_before']}", file=sys.stderr)
    result["blocks"] = gemm_bound_runs(args.runs, args.threads)
    if not args.skip_models:
        result["models"] = model_steps(args.rounds)
    result["rates_after"] = raw_rates()
    result["environment"]["load_average_at_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
