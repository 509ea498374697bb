"""Forward+backward time and peak training memory of attention blocks at the res3 / res4 shapes.

Usage::

    python benchmarks/blocks.py                       # every registered case, results merged into
                                                      # benchmarks/results/blocks.json
    python benchmarks/blocks.py --only nl --runs 5    # cases whose label contains "nl"
    python benchmarks/blocks.py --device cuda
    python benchmarks/blocks.py --rounds 3 --threads 1  # on a shared, loaded machine

Each case runs in a FRESH subprocess, so one case's allocator state cannot hide another's:

* time: median (and min/max) over ``--runs`` forward+backward passes after one warm-up pass, block
  in train mode, loss = sum of the output times a fixed random tensor;
* peak memory, CPU: growth of the process's peak resident set size (``VmHWM``) over the
  baseline taken after building the block and input and after a warm-up on a tiny input (which
  loads kernels and thread pools), i.e. the extra memory the training step needs at its peak:
  activations kept for backward, temporaries, gradients and the output. The child runs with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc maps every block >= 64 KiB separately and returns it
  on free: the RSS then follows live memory. CUDA: ``torch.cuda.max_memory_allocated`` growth.
* MACs: fvcore convention (``videoattn.analysis.complexity.count_macs``) of one forward pass,
  counted on the meta device, for context.

Other block families add their cases with :func:`add_cases` (label, registry name, options) —
typically one line per block at each shape in :data:`SHAPES`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "blocks.json"

# (channels, frames, height, width) of the feature maps where the five blocks of NL/GTA sit in
# R2D-50 at 8x224x224.
SHAPES = {"res3": (512, 8, 28, 28), "res4": (1024, 8, 14, 14)}


@dataclass(frozen=True)
class Case:
    label: str  # unique with the shape, e.g. "nl/sdpa"
    block: str  # registry name
    shape: str  # key of SHAPES
    options: dict = field(default_factory=dict)
    warmup_size: int = 4  # side of the tiny warm-up input taken before the memory baseline


CASES: list[Case] = []


def add_cases(label: str, block: str, shapes=tuple(SHAPES), *, warmup_size: int = 4, **options) -> None:
    for shape in shapes:
        CASES.append(Case(label, block, shape, options, warmup_size))


# --- Non-local family and GTA (issue 3) ---------------------------------------------------------------
add_cases("nl/explicit", "nl", attention_impl="explicit")
add_cases("nl/sdpa", "nl", attention_impl="sdpa")
add_cases("nl/chunked", "nl", attention_impl="chunked")
add_cases("nl/pool_before", "nl", pool_position="before")
add_cases("sa", "sa")
add_cases("ta", "ta")
add_cases("dnl", "dnl")
add_cases("sa+tape", "tape", spatial=True)
add_cases("gta", "gta")
add_cases("gta/no_region", "gta", region=False)

# --- Relational Self-Attention (issue 14) -------------------------------------------------------------
# RSA replaces a bottleneck's 3x3 conv: the shapes are the bottleneck widths (C=128 at res3,
# C=256 at res4), beside the 3x3x3 convolution it is compared with.
SHAPES.update({"rsa_c128": (128, 8, 28, 28), "rsa_c256": (256, 8, 14, 14)})
add_cases("rsa", "rsa", shapes=("rsa_c128", "rsa_c256"))
add_cases("rsa/conv3x3x3", "conv", shapes=("rsa_c128", "rsa_c256"), kernel_size=3)

# --- RNL family and attention baselines (issue 11): RNL vs NL at res3 (3x7x7, as released) / res4 (3x3x3)
add_cases("rnl/3x7x7", "rnl", shapes=("res3",), kernel_size=(3, 7, 7))
add_cases("rnl/3x3x3", "rnl", shapes=("res4",), kernel_size=(3, 3, 3))
add_cases("se_rnl/3x7x7", "chain", shapes=("res3",),
          blocks=["se_add", {"name": "rnl", "options": {"kernel_size": [3, 7, 7]}}])
add_cases("se", "se")
add_cases("cbam", "cbam")
add_cases("gc", "gc")

# --- BAT (issue 13): 2D and 3D BAT (k = 8, s = 7, tk = 4, as the c2d50_bat* presets) beside NL, at the R2D
# res3/res4 shapes (T = 8, where the issue times the released blocks) and at C2D-50's (T = 4 after its
# temporal pool, where the c2d50_bat presets put them).
SHAPES.update({"c2d_res3": (512, 4, 28, 28), "c2d_res4": (1024, 4, 14, 14)})
# The warm-up map is 7x7: BAT's maps must divide into s x s = 7 x 7 blocks.
add_cases("bat", "bat", shapes=("res3", "res4", "c2d_res3", "c2d_res4"), warmup_size=7)
add_cases("bat3d", "bat3d", shapes=("res3", "res4", "c2d_res3", "c2d_res4"), warmup_size=7)
add_cases("nl/sdpa", "nl", shapes=("c2d_res3", "c2d_res4"), attention_impl="sdpa")


# --- GSM family (issue 12): the BN-Inception GSM sites at 8x224x224 (3a/3b, 3c, 4b, 5a/5b) and the
# C=192 28x28 shape the issue quotes for the released module. Configured as the presets (gate_norm).
GSM_SHAPES = {"gsm_c64_28": (64, 8, 28, 28), "gsm_c128_28": (128, 8, 28, 28), "gsm_c192_28": (192, 8, 28, 28),
              "gsm_c192_14": (192, 8, 14, 14), "gsm_c352_7": (352, 8, 7, 7)}
SHAPES.update(GSM_SHAPES)
add_cases("gsm", "gsm", shapes=tuple(GSM_SHAPES), gate_norm=True)
add_cases("gsm/conv3d", "gsm", shapes=tuple(GSM_SHAPES), gate_norm=True, gate_impl="conv3d")
add_cases("sa_gsm", "sa_gsm", shapes=tuple(GSM_SHAPES), gate_norm=True, value="released")


# --- one case, inside the child process --------------------------------------------------------------


def _count_macs(case: Case, batch: int) -> int:
    import torch

    from videoattn.analysis.complexity import count_macs
    from videoattn.blocks import create, get_block_spec

    channels, frames, height, width = SHAPES[case.shape]
    with torch.device("meta"):
        needs_frames = get_block_spec(case.block).needs_num_frames
        block = create(case.block, channels, num_frames=frames if needs_frames else None, **case.options)
        inputs = torch.empty(batch, channels, frames, height, width)
    return count_macs(block, inputs, "fvcore")


def run_case(case: Case, batch: int, runs: int, device: str, threads: int | None) -> dict:
    import torch

    from videoattn.analysis.speed import peak_rss_bytes
    from videoattn.blocks import create, get_block_spec

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    channels, frames, height, width = SHAPES[case.shape]
    needs_frames = get_block_spec(case.block).needs_num_frames
    block = create(case.block, channels, num_frames=frames if needs_frames else None, **case.options)
    block = block.to(device).train()
    params = sum(p.numel() for p in block.parameters())
    x = torch.randn(batch, channels, frames, height, width, device=device, requires_grad=True)
    weights = torch.randn_like(x)

    def step(inputs, grad_weights):
        out = block(inputs)
        (out * grad_weights).sum().backward()
        inputs.grad = None
        block.zero_grad(set_to_none=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    side = case.warmup_size  # the tiny warm-up map's side: 4, or what the block needs (BAT: a multiple of s)
    tiny = torch.randn(1, channels, frames, side, side, device=device, requires_grad=True)
    step(tiny, torch.ones_like(tiny))  # load kernels / thread pools before the memory baseline
    del tiny
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = peak_rss_bytes()
    times = []
    for _ in range(runs + 1):  # the first pass is a warm-up, not timed
        sync()
        start = time.perf_counter()
        step(x, weights)
        sync()
        times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = peak_rss_bytes() - baseline
    timed = times[1:]
    return {
        "label": case.label, "block": case.block, "shape": case.shape, "options": case.options,
        "input_shape": [batch, channels, frames, height, width], "device": device,
        "threads": torch.get_num_threads(), "runs": len(timed),
        "time_s_median": statistics.median(timed), "time_s_min": min(timed), "time_s_max": max(timed),
        "peak_memory_mib": peak / 2**20, "params": params, "gmacs_forward": _count_macs(case, batch) / 1e9,
        "memory_method": "cuda max_memory_allocated growth" if device.startswith("cuda")
        else "peak RSS growth over baseline (fresh process)",
    }


def run_paired(cases: list[Case], batch: int, runs: int, device: str, threads: int | None) -> dict:
    """Time several cases of ONE shape in one process, alternating them pass by pass, so they share
    the same background load: the fairest ratio on a shared machine. Time only (no memory)."""
    import torch

    from videoattn.blocks import create, get_block_spec

    if threads:
        torch.set_num_threads(threads)
    channels, frames, height, width = SHAPES[cases[0].shape]
    blocks = []
    for case in cases:
        torch.manual_seed(0)
        needs_frames = get_block_spec(case.block).needs_num_frames
        block = create(case.block, channels, num_frames=frames if needs_frames else None, **case.options)
        blocks.append(block.to(device).train())
    x = torch.randn(batch, channels, frames, height, width, device=device, requires_grad=True)
    weights = torch.randn_like(x)
    times: list[list[float]] = [[] for _ in cases]
    for repeat in range(runs + 1):
        for index, block in enumerate(blocks):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            (block(x) * weights).sum().backward()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if repeat:  # the first round is a warm-up
                times[index].append(time.perf_counter() - start)
            x.grad = None
            block.zero_grad(set_to_none=True)
    return {f"{case.label}|{case.shape}": {"paired_time_s_median": statistics.median(t), "paired_time_s_min": min(t)}
            for case, t in zip(cases, times)}


# --- driver --------------------------------------------------------------------------------------------


def _run_in_subprocess(case: Case, args) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(asdict(case)), "--batch", str(args.batch),
               "--runs", str(args.runs), "--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    # A fixed mmap threshold makes glibc serve every allocation >= 64 KiB with mmap and unmap it on
    # free, so the resident set follows live tensor memory (with the default dynamic threshold,
    # freed blocks up to 32 MiB stay resident and the peak RSS over-states live memory by tens of MiB).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        return {"label": case.label, "block": case.block, "shape": case.shape, "options": case.options,
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_paired_in_subprocess(cases: list[Case], args) -> dict:
    command = [sys.executable, __file__, "--child-paired", json.dumps([asdict(c) for c in cases]),
               "--batch", str(args.batch), "--runs", str(args.runs), "--device", args.device]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout * len(cases))
    if proc.returncode != 0:
        print(f"paired timing failed: {proc.stderr.strip()[-500:]}", flush=True)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _time_ratio(a: dict, b: dict) -> dict:
    out = {"time_ratio": round(a["time_s_median"] / b["time_s_median"], 3),
           "time_ratio_of_minima": round(a["time_s_min"] / b["time_s_min"], 3)}
    if "paired_time_s_median" in a and "paired_time_s_median" in b:
        out["paired_time_ratio"] = round(a["paired_time_s_median"] / b["paired_time_s_median"], 3)
        out["paired_time_ratio_of_minima"] = round(a["paired_time_s_min"] / b["paired_time_s_min"], 3)
    return out


# (label, reference label) pairs reported at every shape where both ran.
OTHER_RATIOS = (("rnl/3x7x7", "nl/sdpa"), ("rnl/3x3x3", "nl/sdpa"), ("se_rnl/3x7x7", "nl/sdpa"),
                ("bat", "nl/sdpa"), ("bat3d", "nl/sdpa"), ("bat3d", "bat"),
                ("rsa", "rsa/conv3x3x3"))


def summarise(results: list[dict]) -> dict:
    """Ratios the issue asks for: memory-efficient NL vs explicit, GTA vs NL (res3)."""
    by_key = {(r["label"], r["shape"]): r for r in results if "error" not in r}
    summary = {}
    for shape in SHAPES:
        explicit = by_key.get(("nl/explicit", shape))
        for label in ("nl/sdpa", "nl/chunked"):
            fast = by_key.get((label, shape))
            if explicit and fast:
                summary[f"{shape} {label} vs nl/explicit"] = {
                    "peak_memory_ratio": round(fast["peak_memory_mib"] / explicit["peak_memory_mib"], 3),
                    **_time_ratio(fast, explicit),
                }
        default_nl = by_key.get(("nl/sdpa", shape))
        for label in ("gta", "dnl", "sa+tape"):
            other = by_key.get((label, shape))
            for nl_label, nl in (("nl/explicit", explicit), ("nl/sdpa", default_nl)):
                if other and nl:
                    summary[f"{shape} {label} vs {nl_label}"] = {
                        **_time_ratio(other, nl),
                        "peak_memory_ratio": round(other["peak_memory_mib"] / nl["peak_memory_mib"], 3),
                        "macs_ratio": round(other["gmacs_forward"] / nl["gmacs_forward"], 3),
                    }
        for label, reference in OTHER_RATIOS:  # RNL (11), BAT (13) vs NL / each other; RSA (14) vs its conv
            other, ref = by_key.get((label, shape)), by_key.get((reference, shape))
            if other and ref:
                summary[f"{shape} {label} vs {reference}"] = {
                    **_time_ratio(other, ref),
                    "peak_memory_ratio": round(other["peak_memory_mib"] / ref["peak_memory_mib"], 3),
                    "macs_ratio": round(other["gmacs_forward"] / ref["gmacs_forward"], 3),
                }
        gsm, gsm_conv3d = by_key.get(("gsm", shape)), by_key.get(("gsm/conv3d", shape))
        if gsm and gsm_conv3d:  # the matmul gate vs the grouped-conv3d gate the release uses
            summary[f"{shape} gsm vs gsm/conv3d"] = {
                **_time_ratio(gsm, gsm_conv3d),
                "peak_memory_ratio": round(gsm["peak_memory_mib"] / gsm_conv3d["peak_memory_mib"], 3),
            }
    return summary


def markdown_table(results: list[dict]) -> str:
    lines = ["| block | shape | fwd+bwd time, s (median / min) | peak train memory (MiB) | fwd GMACs | params |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['shape']} | error: {r['error']} | | | |")
            continue
        lines.append(f"| {r['label']} | {r['shape']} | {r['time_s_median']:.3f} / {r['time_s_min']:.3f} | "
                     f"{r['peak_memory_mib']:.0f} | {r['gmacs_forward']:.2f} | {r['params'] / 1e6:.3f} M |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run cases whose label contains this")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="restrict to these shapes")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each case")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per case")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run all cases this many times, interleaved; keep each case's fastest round")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--summarise-only", action="store_true",
                        help="re-render the table and summary of --output without running anything")
    parser.add_argument("--paired", action="store_true",
                        help="also time the selected cases of each shape in one process, alternating "
                             "(paired_time_s_*; used for the summary ratios)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-paired", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.summarise_only:
        from videoattn.utils.io import atomic_write_json

        report = json.loads(args.output.read_text())
        report["summary"] = summarise(report["results"])
        atomic_write_json(args.output, report)
        print(markdown_table(report["results"]))
        print(json.dumps(report["summary"], indent=2))
        return 0

    if args.child:
        case = Case(**json.loads(args.child))
        print(json.dumps(run_case(case, args.batch, args.runs, args.device, args.threads)))
        return 0
    if args.child_paired:
        paired_cases = [Case(**c) for c in json.loads(args.child_paired)]
        print(json.dumps(run_paired(paired_cases, args.batch, args.runs, args.device, args.threads)))
        return 0

    cases = [c for c in CASES if (not args.only or any(o in c.label for o in args.only))
             and (not args.shape or c.shape in args.shape)]
    # Rounds interleave the cases, so on a shared machine each case samples the background load at
    # several moments; per case the round with the lowest median time is kept (memory does not
    # depend on the load; the largest peak over rounds is kept to stay conservative).
    best: dict[tuple[str, str], dict] = {}
    for round_index in range(args.rounds):
        for case in cases:
            result = _run_in_subprocess(case, args)
            key = (case.label, case.shape)
            if "error" in result:
                print(f"{case.label:16s} {case.shape}: ERROR {result['error']}", flush=True)
                best.setdefault(key, result)
                continue
            print(f"[round {round_index + 1}] {case.label:16s} {case.shape}: {result['time_s_median']:.3f} s  "
                  f"{result['peak_memory_mib']:.0f} MiB  {result['gmacs_forward']:.2f} GMACs", flush=True)
            previous_best = best.get(key)
            if previous_best is None or "error" in previous_best:
                result["rounds"] = 1
                best[key] = result
                continue
            peak = max(previous_best["peak_memory_mib"], result["peak_memory_mib"])
            if result["time_s_median"] < previous_best["time_s_median"]:
                result["rounds"] = previous_best["rounds"] + 1
                best[key] = result
            else:
                previous_best["rounds"] += 1
            best[key]["peak_memory_mib"] = peak
    results = [best[(c.label, c.shape)] for c in cases]
    if args.paired:
        for shape in SHAPES:
            shape_cases = [c for c in cases if c.shape == shape]
            if len(shape_cases) < 2:
                continue
            paired = _run_paired_in_subprocess(shape_cases, args)
            for result in results:
                result.update(paired.get(f"{result['label']}|{result['shape']}", {}))
            for key, value in paired.items():
                print(f"paired {key}: median {value['paired_time_s_median']:.3f} s, "
                      f"min {value['paired_time_s_min']:.3f} s", flush=True)

    # Merge with earlier results so families can re-run their own cases without losing the others.
    previous = []
    if args.output.exists():
        try:
            previous = json.loads(args.output.read_text()).get("results", [])
        except (json.JSONDecodeError, AttributeError):
            previous = []
    fresh = {(r["label"], r["shape"]) for r in results}
    merged = [r for r in previous if (r.get("label"), r.get("shape")) not in fresh] + results
    import torch

    from videoattn.utils.io import atomic_write_json

    report = {
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "device": args.device, "batch": args.batch},
        "results": merged,
        "summary": summarise(merged),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, report)
    print(markdown_table(merged))
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
