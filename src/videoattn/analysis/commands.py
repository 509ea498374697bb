"""``videoattn profile``: parameters and MACs of a model preset under a paper's counting convention."""

from __future__ import annotations

import argparse
import json

CONVENTIONS = ("fvcore", "thop")


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
    parser.add_argument("--frames", type=int, default=8, help="input frames T (default 8)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--convention", choices=CONVENTIONS, default="fvcore", help="counting convention")
    parser.add_argument("--option", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                        help="override a model option, e.g. --option base_channels=32 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_profile)

    models = subparsers.add_parser("models", help="list model presets",
                                   description="List model presets, optionally matching a glob pattern.")
    models.add_argument("pattern", nargs="?", default=None, help="glob such as 'r2d50_*'")
    models.add_argument("--json", action="store_true", help="print a JSON list")
    models.set_defaults(func=run_models)


def run_profile(args) -> int:
    from .complexity import profile_model

    result = profile_model(args.model, num_classes=args.num_classes, num_frames=args.frames, size=args.size,
                           convention=args.convention, **dict(args.option))
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        shape = "x".join(str(s) for s in result.input_shape)
        print(f"{result.model}  input {shape}  convention {result.convention}")
        print(f"  params  {result.params:,} ({result.mparams:.2f} M)")
        print(f"  MACs    {result.macs:,} ({result.gmacs:.2f} G, reported as 'GFLOPs' in the papers)")
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
