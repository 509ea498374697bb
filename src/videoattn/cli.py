"""The ``videoattn`` command line.

Each command lives beside the code it drives and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` to the function that runs it. Command modules import torch and friends
lazily, so ``videoattn --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import VideoAttnError
from .version import __version__

# Order here is the order in `videoattn --help`.
_COMMAND_MODULES = (
    "videoattn.demo",
    "videoattn.analysis.commands",
    "videoattn.engine.commands",
    "videoattn.config_files",
    "videoattn.data.commands",
    "videoattn.visualize.commands",
    "videoattn.deploy.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoattn",
        description="Spatio-temporal attention for video action recognition: train, evaluate, "
        "profile and compare GTA, Non-local and related models.",
    )
    parser.add_argument("--version", action="version", version=f"videoattn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except VideoAttnError as error:
        print(f"videoattn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"videoattn {args.command}: error: file not found: {error.filename or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"videoattn {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
