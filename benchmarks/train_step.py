"""Training-step benchmark: how close one SGD step comes to this CPU's GEMM rate, and its peak memory.

The limit is measured in the same run: this machine's fp32 and bf16 matrix-product rate (2048^2 x
2048^2, the benchmark's thread count, best of several) before and after the cases. Each case is one
training step of a preset at batch ``--batch`` x 8 x ``--size`` as the engine runs it (autocast from
``videoattn.engine.precision``, cross-entropy on float logits, backward, the engine's
optimizer via ``videoattn.engine.trainer.build_optimizer``, ``zero_grad(set_to_none=True)``). Its rate
is 3 x the forward MACs per clip (``videoattn.analysis.complexity``, fvcore convention; a MAC is
counted as one multiply-add, so GFLOP/s = 2 x 3 x MACs x clips / step seconds / 1e9) over the step
time, divided by the GEMM rate of the same precision (also 2 flops per multiply-add).

Variants (``--variants``) are timed interleaved, round by round, so the machine's load (it is
shared) hits them alike: ``engine`` (the library's defaults) and ``channels_last``
(``model.channels_last: true``: the trunk's 2D convolution weights, and so its activations, NHWC).
``--profile`` prints torch.profiler's top operators of one
step per case. ``--memory`` instead measures the peak resident memory (VmHWM) of one training
step per case in a fresh subprocess, with and without ``model.checkpoint_blocks``.

    python benchmarks/train_step.py [--models r2d50,r2d50_gta,tsm50] [--precisions fp32,bf16]
        [--rounds 3] [--variants engine,channels_last] [--out benchmarks/results/train_step.json]
    python benchmarks/train_step.py --memory --models r2d50_gta --batch 8 --size 224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from videoattn.analysis.speed import TrainingStep, matmul_rate, peak_rss_bytes  # noqa: E402
from videoattn.engine.precision import cpu_has_native_bf16  # noqa: E402


def gemm_rates() -> dict[str, float]:
    """fp32 and bf16 2048^2 matrix-product rates (``videoattn.analysis.speed.matmul_rate``: on a CPU
    without native bf16 -- no AVX-512 BF16 / AMX -- the bf16 figure is a 512^2 probe's, the fallback
    kernel being far too slow for 2048^2)."""
    return {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}


def _zeros_shift(x: torch.Tensor, n_div: int = 8) -> torch.Tensor:
    """TSM's shift as written before issue 18 (``zeros_like`` + slice assignment), for the
    ``zeros_shift`` variant."""
    fold = x.shape[1] // n_div
    out = torch.zeros_like(x)
    out[:, :fold, :-1] = x[:, :fold, 1:]
    out[:, fold : 2 * fold, 1:] = x[:, fold : 2 * fold, :-1]
    out[:, 2 * fold :] = x[:, 2 * fold :]
    return out


def forward_macs(name: str, frames: int, size: int, **overrides) -> int:
    from videoattn.analysis.complexity import profile_model

    return profile_model(name, num_classes=174, num_frames=frames, size=size, **overrides).macs


class StepCase(TrainingStep):
    """The library's training step (``videoattn.analysis.speed.TrainingStep``: the engine's autocast, loss,
    backward and fused SGD) at 174 classes, plus the ``zeros_shift`` variant."""

    def __init__(self, name: str, precision: str, batch: int, frames: int, size: int,
                 channels_last: bool = False, checkpoint_blocks: bool = False, zeros_shift: bool = False):
        super().__init__(name, precision, batch, frames, size, channels_last=channels_last,
                         checkpoint_blocks=checkpoint_blocks)
        self.zeros_shift = zeros_shift

    def step(self) -> float:
        if not self.zeros_shift:
            return super().step()
        import videoattn.blocks.shift as shift

        original, shift.temporal_shift = shift.temporal_shift, _zeros_shift
        try:
            return super().step()
        finally:
            shift.temporal_shift = original


def profile_step(case: StepCase, top: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile

    case.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        case.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def run_speed(args) -> dict:
    torch.set_num_threads(args.threads)
    models = args.models.split(",")
    precisions = args.precisions.split(",")
    variants = args.variants.split(",")
    native = cpu_has_native_bf16()
    before = gemm_rates()
    print(f"GEMM before: {before}; native bf16: {native}", file=sys.stderr)
    results = []
    for name in models:
        macs = forward_macs(name, args.frames, args.size)
        for precision in precisions:
            cases = {v: StepCase(name, precision, args.batch, args.frames, args.size,
                                 channels_last=v == "channels_last", zeros_shift=v == "zeros_shift")
                     for v in variants}
            for case in cases.values():
                case.step()  # warm-up: allocator, oneDNN primitives
            times: dict[str, list[float]] = {v: [] for v in variants}
            infer: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for v in variants:
                    times[v].append(cases[v].step())
                    if args.inference:
                        infer[v].append(cases[v].infer())
            for v in variants:
                best = min(times[v])
                gflops = 2 * 3 * macs * args.batch / best / 1e9
                row = {"model": name, "precision": precision, "variant": v, "batch": args.batch,
                       "frames": args.frames, "size": args.size, "step_seconds": times[v],
                       "best_step_seconds": best, "train_clips_per_s": args.batch / best,
                       "forward_gmacs_per_clip": macs / 1e9,
                       "achieved_gflops": gflops, "of_gemm_before": gflops / before[precision]}
                if args.inference:
                    row.update(inference_seconds=infer[v], inference_clips_per_s=args.batch / min(infer[v]))
                results.append(row)
                print(json.dumps({k: row[k] for k in ("model", "precision", "variant", "best_step_seconds",
                                                     "of_gemm_before")}), file=sys.stderr)
            if args.profile:
                for v in variants:
                    print(f"--- {name} {precision} {v}", file=sys.stderr)
                    print(profile_step(cases[v]), file=sys.stderr)
            del cases
    after = gemm_rates()
    print(f"GEMM after: {after}", file=sys.stderr)
    for row in results:
        best_rate = max(before[row["precision"]], after[row["precision"]])
        row["of_gemm_best"] = row["achieved_gflops"] / best_rate
        row["of_gemm_worst"] = row["achieved_gflops"] / min(before[row["precision"]], after[row["precision"]])
    return {"gemm_gflops_before": before, "gemm_gflops_after": after,
            "native_bf16": native, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cases": results}


def _memory_child(args) -> None:
    torch.set_num_threads(args.threads)
    case = StepCase(args.models, args.precisions, args.batch, args.frames, args.size,
                    checkpoint_blocks=args.checkpoint_blocks)
    seconds = case.step()
    print(json.dumps({"peak_rss_mib": peak_rss_bytes() / 2**20, "step_seconds": seconds}))


def run_memory(args) -> dict:
    results = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            for checkpoint in (False, True):
                command = [sys.executable, __file__, "--memory-child", "--models", name, "--precisions",
                           precision, "--batch", str(args.batch), "--frames", str(args.frames), "--size",
                           str(args.size), "--threads", str(args.threads)]
                if checkpoint:
                    command.append("--checkpoint-blocks")
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                row = {"model": name, "precision": precision, "checkpoint_blocks": checkpoint,
                       "batch": args.batch, "frames": args.frames, "size": args.size,
                       **json.loads(output.strip().splitlines()[-1])}
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    return {"cases": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="r2d50,r2d50_gta,tsm50")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--variants", default="engine,channels_last")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--inference", action="store_true", help="also time an eval-mode forward per round")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint-blocks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--section", default=None, help="key of the output JSON to write (default: speed/memory)")
    parser.add_argument("--out", default=None, help="JSON file; its section for this mode is replaced")
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args)
        return 0
    started = time.time()
    section = "memory" if args.memory else "speed"
    result = run_memory(args) if args.memory else run_speed(args)
    result.update(settings={k: v for k, v in vars(args).items() if k not in ("out", "memory_child")},
                  seconds=time.time() - started, torch=torch.__version__, machine=platform.machine(),
                  cpu_count=os.cpu_count(), load_average=os.getloadavg())
    if args.out:
        from videoattn.utils.io import update_json_section

        update_json_section(args.out, args.section or section, result)
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
