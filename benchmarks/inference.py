"""Inference throughput on CPU: eager PyTorch vs onnxruntime vs bf16 autocast, R2D-50 with and without GTA.

For each model (8 frames, 224x224, 174 classes as SS-v1) and batch size, three ways of computing the
same logits are timed:

- ``eager``: the PyTorch model in eval mode under ``torch.inference_mode()``, float32;
- ``onnxruntime``: the model exported by ``videoattn export``'s code path (TorchScript-based ONNX
  exporter, opset 17, dynamic batch; parity-checked) run by onnxruntime's CPU provider with the same
  number of intra-op threads and all graph optimisations;
- ``bf16``: the eager model under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Cases are timed interleaved (round r runs every case once, so all cases sample the same background load
on a shared machine), after one warm-up call each. Per case the median and minimum call times are
reported with clips/s = batch / median; the ratios to eager are the medians of the per-round ratios
(paired), which is what to compare on a noisy machine.

    python benchmarks/inference.py                        # 2 threads, batch 1 and 8
    python benchmarks/inference.py --rounds 5 --rounds-batch8 2 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "inference.json"
MODELS = ("r2d50", "r2d50_gta")
MODES = ("eager", "onnxruntime", "bf16")


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))


def build_runners(name: str, frames: int, size: int, threads: int, folder: Path) -> dict:
    import onnxruntime

    from videoattn import create_model
    from videoattn.deploy.export import export_module

    torch.manual_seed(0)
    model = create_model(name, num_classes=174, num_frames=frames).eval()
    path = folder / f"{name}.onnx"
    start = time.perf_counter()
    # No check here (a batch of 3 at 224 px is minutes on a loaded CPU): the warm-up compares instead.
    export_module(model, "onnx", path, {"model": name, "num_frames": frames, "size": size}, check=False)
    export_seconds = time.perf_counter() - start
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def eager(x):
        with torch.inference_mode():
            return model(x)

    def ort(x):
        return session.run(None, {"video": x.numpy()})[0]

    def bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    return {"runners": {"eager": eager, "onnxruntime": ort, "bf16": bf16},
            "export_seconds": round(export_seconds, 1)}


def write_result(args, built: dict, times: dict, started: float) -> dict:
    import onnxruntime

    cases = []
    for (name, batch, mode), seconds in times.items():
        eager = times[(name, batch, "eager")]
        ratios = [e / s for e, s in zip(eager, seconds)]  # > 1: faster than eager in the same round
        cases.append({"model": name, "batch": batch, "mode": mode, "rounds": len(seconds),
                      "median_seconds": statistics.median(seconds), "min_seconds": min(seconds),
                      "clips_per_second": batch / statistics.median(seconds),
                      "speedup_vs_eager": statistics.median(ratios)})
    result = {
        "benchmark": "inference", "threads": args.threads, "frames": args.frames, "size": args.size,
        "warmup_at_batch8": not args.no_warmup_batch8,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_flags": cpu_flags(),
        "models": {name: {k: v for k, v in b.items() if k != "runners"} for name, b in built.items()},
        "cases": cases, "total_seconds": round(time.perf_counter() - started, 1),
    }
    from videoattn.utils.io import atomic_write_json  # rewritten every round: never leave a torn file

    atomic_write_json(args.output, result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds at batch 1")
    parser.add_argument("--rounds-batch8", type=int, default=2, help="timed rounds at batches above 1")
    parser.add_argument("--modes-batch8", nargs="+", default=list(MODES), choices=MODES,
                        help="modes timed at batches above 1 (bf16 is emulated, hence slow, on CPUs "
                        "without avx512_bf16/AMX)")
    parser.add_argument("--no-warmup-batch8", action="store_true",
                        help="no warm-up call at batches above 1 (one-time costs were paid at batch 1)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    times: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        built = {name: build_runners(name, args.frames, args.size, args.threads, Path(folder)) for name in MODELS}
        print(f"exported ({time.perf_counter() - started:.0f}s)", flush=True)
        for batch in args.batches:
            modes = MODES if batch == 1 else tuple(args.modes_batch8)
            x = torch.randn(batch, 3, args.frames, args.size, args.size)
            if batch == 1 or not args.no_warmup_batch8:
                for name in MODELS:
                    outputs = {mode: torch.as_tensor(built[name]["runners"][mode](x)).float() for mode in modes}
                    for mode in modes:  # the exported model and bf16 against eager, same input
                        built[name].setdefault("max_abs_diff_vs_eager", {})[f"{mode}_batch{batch}"] = float(
                            (outputs[mode] - outputs["eager"]).abs().max())
            rounds = args.rounds if batch == 1 else args.rounds_batch8
            for round_index in range(rounds):
                for name in MODELS:
                    for mode in modes:
                        start = time.perf_counter()
                        built[name]["runners"][mode](x)
                        times.setdefault((name, batch, mode), []).append(time.perf_counter() - start)
                print(f"batch {batch}: round {round_index + 1}/{rounds} done "
                      f"({time.perf_counter() - started:.0f}s)", flush=True)
                write_result(args, built, times, started)  # partial results survive an interrupted run
    result = write_result(args, built, times, started)
    for case in result["cases"]:
        print(f"{case['model']:<10} batch {case['batch']} {case['mode']:<12} {case['clips_per_second']:7.2f} clips/s"
              f"  x{case['speedup_vs_eager']:.2f} vs eager")
    return 0


if __name__ == "__main__":
    sys.exit(main())
