"""``videoattn profile``: parameters and MACs of a model preset under a paper's counting convention."""

from __future__ import annotations

import argparse
import json

from ..engine.precision import PRECISIONS
from ..errors import ConfigError

CONVENTIONS = ("fvcore", "thop")
#: What ``profile`` counts at for a preset without a paper row (``Preset.paper_input`` None).
DEFAULT_INPUT = {"frames": 8, "size": 224, "convention": "fvcore"}


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as YAML (``num_groups=4`` -> 4, ``plan=five_block`` -> str)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile", help="count parameters and MACs (GFLOPs as the papers report them) of a model",
        description="Count parameters and multiply-accumulates of a model preset on the meta device "
        "(no memory, no arithmetic). 'fvcore' counts convolutions, linear layers and matrix products "
        "(GTA/NL/BAT tables); 'thop' counts modules: conv (+bias), batch norm, linear, pooling "
        "(RNL tables).",
    )
    parser.add_argument("model", help="a preset name (see `videoattn models`)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the preset's)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"input frames T (default: the preset's paper row, else {DEFAULT_INPUT['frames']})")
    parser.add_argument("--size", type=int, default=None,
                        help=f"input height and width (default: the preset's paper row, else {DEFAULT_INPUT['size']})")
    parser.add_argument("--convention", choices=CONVENTIONS, default=None,
                        help=f"counting convention (default: the preset's paper's, else {DEFAULT_INPUT['convention']})")
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="override a model option, e.g. --option base_channels=32 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    speed = parser.add_argument_group(
        "speed", "--speed also times training steps and inference on this machine, against its own "
                 "matrix-product rate (docs/training.md, Performance)")
    speed.add_argument("--speed", action="store_true", help="time training steps and inference here")
    speed.add_argument("--batch", type=int, default=2, help="clips per step (default 2)")
    speed.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="autocast precision, as train.precision (default fp32)")
    speed.add_argument("--channels-last", action="store_true", help="as model.channels_last: true")
    speed.add_argument("--device", default="cpu", help="torch device: cpu, cuda or cuda:N (default cpu)")
    speed.add_argument("--rounds", type=int, default=3, help="timed steps after one warm-up (default 3)")
    speed.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.set_defaults(func=run_profile)

    models = subparsers.add_parser("models", help="list model presets",
                                   description="List model presets, optionally matching a glob pattern.")
    models.add_argument("pattern", nargs="?", default=None, help="glob such as 'r2d50_*'")
    models.add_argument("--json", action="store_true", help="print a JSON list")
    models.set_defaults(func=run_models)


def profile_input(model: str, frames: int | None = None, size: int | None = None,
                  convention: str | None = None) -> dict:
    """Frames, size and convention ``profile`` counts ``model`` at: each given value, else the preset's
    paper row (``Preset.paper_input``), else :data:`DEFAULT_INPUT`; ``source`` says which for each."""
    from ..models import get_preset

    paper = get_preset(model).paper_input
    chosen: dict = {}
    source: dict = {}
    for key, given in (("frames", frames), ("size", size), ("convention", convention)):
        if given is not None:
            chosen[key], source[key] = given, "given"
        elif paper is not None:
            chosen[key], source[key] = paper[key], "paper"
        else:
            chosen[key], source[key] = DEFAULT_INPUT[key], "default"
    return {**chosen, "source": source, "paper": dict(paper) if paper is not None else None}


def check_speed_device(device: str, precision: str) -> None:
    """One-line ConfigErrors naming ``--device`` / ``--precision`` for what ``--speed`` cannot run."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device: got {device!r}; expected a torch device such as cpu, cuda or cuda:1") from None
    if parsed.type == "cuda":
        from ..cli import check_cuda_flag

        check_cuda_flag(device)
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device: got {device!r}; --speed runs on cpu or cuda")
    if precision == "fp16" and parsed.type != "cuda":
        raise ConfigError(f"--precision: got 'fp16' but fp16 autocast needs a CUDA device (--device cuda); "
                          f"use bf16 or fp32 on {parsed.type}")


def _describe_input(chosen: dict, is_image: bool) -> str:
    """``"(the paper row's input)"``, ``"(--frames 8; the paper row's input is 64x256x256)"`` or
    ``"(no paper row: default)"``."""
    source, paper = chosen["source"], chosen["paper"]
    keys = ("size",) if is_image else ("frames", "size")
    given = [f"--{k} {chosen[k]}" for k in keys if source[k] == "given"]
    if paper is None:
        text = "no paper row: " + ", ".join(given or ["default"])
    elif given:
        row = f"{paper['size']}x{paper['size']}" if is_image else f"{paper['frames']}x{paper['size']}x{paper['size']}"
        text = f"{', '.join(given)}; the paper row's input is {row}"
    else:
        text = "the paper row's input"
    return f"({text})"


def run_profile(args) -> int:
    from ..models import get_preset
    from ..models.recognizer import build_image_classifier
    from .complexity import profile_model

    if args.speed:
        check_speed_device(args.device, args.precision)
    chosen = profile_input(args.model, args.frames, args.size, args.convention)
    is_image = get_preset(args.model).builder is build_image_classifier
    counts = {}
    for convention in (chosen["convention"], *[c for c in CONVENTIONS if c != chosen["convention"]]):
        counts[convention] = profile_model(args.model, num_classes=args.num_classes, num_frames=chosen["frames"],
                                           size=chosen["size"], convention=convention, **dict(args.option))
    result = counts[chosen["convention"]]
    other = next(counts[c] for c in counts if c != chosen["convention"])
    speed = None
    if args.speed:
        import torch

        from .speed import measure_speed

        if args.threads is not None:
            if args.threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        speed = measure_speed(args.model, batch=args.batch, frames=chosen["frames"], size=chosen["size"],
                              precision=args.precision, channels_last=args.channels_last, device=args.device,
                              rounds=args.rounds, num_classes=args.num_classes or 174, **dict(args.option))
    if args.json:
        print(json.dumps({**result.to_dict(), "input_source": chosen["source"], "paper_input": chosen["paper"],
                          "macs_by_convention": {c: r.macs for c, r in counts.items()},
                          **({"speed": speed.to_dict()} if speed else {})}))
        return 0
    shape = "x".join(str(s) for s in result.input_shape)
    convention_source = {"given": "--convention", "paper": "the paper's",
                         "default": "default"}[chosen["source"]["convention"]]
    print(f"{result.model}  input {shape} {_describe_input(chosen, is_image)}  "
          f"convention {result.convention} ({convention_source})")
    print(f"  params  {result.params:,} ({result.mparams:.2f} M)")
    print(f"  MACs    {result.macs:,} ({result.gmacs:.2f} G {result.convention}, reported as 'GFLOPs' in the papers)")
    if other.macs != result.macs:
        print(f"          {other.gmacs:.2f} G under the {other.convention} convention "
              f"(docs/model_zoo.md says what each counts)")
    if speed:
        layout = ", channels-last" if speed.channels_last else ""
        shape = "x".join(str(s) for s in speed.input_shape)
        print(f"  speed   {speed.precision} on {speed.device} ({speed.threads} threads{layout}), batch {speed.batch} "
              f"({shape}), best of {len(speed.step_seconds)}:")
        print(f"          training   {speed.best_step_seconds:.3f} s/step  {speed.train_clips_per_second:.2f} clips/s")
        if speed.inference_clips_per_second is not None:
            print(f"          inference  {speed.inference_clips_per_second:.2f} clips/s")
        print(f"          training at {speed.achieved_gflops:.1f} GFLOP/s = {speed.of_matmul_rate:.2f} of this "
              f"device's {speed.precision} matrix-product rate ({speed.matmul_gflops:.1f} GFLOP/s, fvcore MACs)")
        what = "peak allocated" if speed.device.startswith("cuda") else "process peak resident"
        print(f"          {what} {speed.peak_memory_mib:,.0f} MiB")
    return 0


def run_models(args) -> int:
    from ..models import get_preset, list_models

    names = list_models(args.pattern)
    if args.json:
        print(json.dumps([{"name": n, "description": get_preset(n).description,
                           "reference": get_preset(n).reference} for n in names]))
        return 0
    width = max((len(n) for n in names), default=0)
    for name in names:
        preset = get_preset(name)
        print(f"{name:<{width}}  {preset.description}" + (f" [{preset.reference}]" if preset.reference else ""))
    return 0
