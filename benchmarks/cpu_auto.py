"""The measurements behind ``train.precision: auto`` and ``model.channels_last: auto`` on a CPU.

For each case (a preset, its options, batch x frames x size) one training step exactly as the engine
runs it (``videoattn.analysis.speed.TrainingStep``) is timed in four layouts, interleaved round by
round so the machine's load hits them alike: fp32 NCHW, fp32 channels-last, bf16 NCHW, bf16
channels-last. Reported: the best step of each, and the work per step (forward MACs per clip x batch,
``videoattn.analysis.complexity``, fvcore convention), which is what the CPU rule in
``videoattn.engine.precision.cpu_auto_layout`` decides from.

    python benchmarks/cpu_auto.py [--cases demo_r2d,demo_gta,r2d18_112,r2d50_112,r2d50_224] [--rounds 5]
        [--out benchmarks/results/cpu_auto.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from videoattn.analysis.complexity import count_macs  # noqa: E402
from videoattn.analysis.speed import TrainingStep  # noqa: E402
from videoattn.engine.precision import cpu_has_amx, cpu_has_native_bf16  # noqa: E402
from videoattn.models import create_model  # noqa: E402

#: name -> (preset, options, batch, frames, size). The demo's cases are its own models at its own size.
CASES = {
    "demo_r2d": ("r2d18", {"base_channels": 16}, 16, 8, 32),
    "demo_gta": ("r2d18_gta", {"base_channels": 16, "block_options": {"num_groups": 4}}, 16, 8, 32),
    "tiny_tsm": ("r2d18", {"base_channels": 8, "variant": "tsm"}, 16, 8, 32),
    "r2d18_112": ("r2d18", {}, 2, 8, 112),
    "r2d50_112": ("r2d50", {}, 2, 8, 112),
    "r2d50_224": ("r2d50", {}, 2, 8, 224),
    # attention-heavy presets: their blocks' softmax/BN work gains less from bf16 than convolutions do
    "r2d50_nl_112": ("r2d50_nl", {}, 2, 8, 112),
    "r2d50_gta_112": ("r2d50_gta", {}, 2, 8, 112),
    "tsn50_rsa_112": ("tsn50_rsa", {}, 2, 8, 112),
}
LAYOUTS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def macs_per_step(preset: str, options: dict, batch: int, frames: int, size: int) -> int:
    with torch.device("meta"):
        model = create_model(preset, num_classes=174, num_frames=frames, **options)
        clip = torch.zeros(1, 3, frames, size, size)
    return count_macs(model, clip) * batch


def run_case(name: str, rounds: int) -> dict:
    preset, options, batch, frames, size = CASES[name]
    steps = {layout: TrainingStep(preset, precision=layout[0], batch=batch, frames=frames, size=size,
                                  channels_last=layout[1], **options) for layout in LAYOUTS}
    best = {layout: float("inf") for layout in LAYOUTS}
    for step in steps.values():  # warm-up: first-call allocations and oneDNN primitive creation
        step.step()
    for _ in range(rounds):
        for layout, step in steps.items():
            best[layout] = min(best[layout], step.step())
    fp32 = best[("fp32", False)]
    row = {"case": name, "preset": preset, "options": options, "batch": batch, "frames": frames, "size": size,
           "gmacs_per_step": macs_per_step(preset, options, batch, frames, size) / 1e9,
           "seconds": {f"{p}_{'nhwc' if cl else 'nchw'}": s for (p, cl), s in best.items()},
           "speedup_vs_fp32_nchw": {f"{p}_{'nhwc' if cl else 'nchw'}": fp32 / s for (p, cl), s in best.items()}}
    print(json.dumps(row), file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; expected any of {', '.join(CASES)}")
    torch.set_num_threads(args.threads)
    start = time.time()
    report = {"machine": {"processor": platform.processor() or platform.machine(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                          "native_bf16": cpu_has_native_bf16(), "amx": cpu_has_amx(),
                          "threads": args.threads, "torch": torch.__version__},
              "rounds": args.rounds, "cases": [run_case(name, args.rounds) for name in args.cases.split(",")]}
    report["seconds"] = round(time.time() - start, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
