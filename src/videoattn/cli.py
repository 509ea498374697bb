"""The ``videoattn`` command line.

Each command lives beside the code it drives and exposes ``register(subparsers)``, which adds its
parser and sets ``func`` to the function that runs it. Command modules import torch and friends
lazily, so ``videoattn --help`` answers at once.

``--set`` (train, test, predict, export, visualize) takes one ``KEY=VALUE`` per occurrence; the
``KEY=VALUE`` tokens right after it are read as further ``--set`` values, so ``--set a=1 b=2 video.webm``
works with the positional argument after it (a positional that looks like ``key=value`` goes before
``--set``).
"""

from __future__ import annotations

import argparse
import importlib
import re
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


#: A ``--set`` value: a (dotted) key, ``=``, anything.
_KEY_VALUE = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*=")
SET_FLAG = "--set"


def split_set_values(arg_strings: list[str]) -> list[str]:
    """``--set a=1 b=2 video`` -> ``--set a=1 --set b=2 video``: the KEY=VALUE tokens that follow a
    ``--set`` value become their own ``--set``; the first token after ``--set`` is always its value."""
    out: list[str] = []
    after_set = False  # the previous token was a --set value
    tokens = iter(arg_strings)
    for token in tokens:
        if token == "--":
            out.append(token)
            out.extend(tokens)
            break
        if after_set and _KEY_VALUE.match(token):
            out.extend((SET_FLAG, token))
            continue
        after_set = False
        out.append(token)
        if token == SET_FLAG:
            value = next(tokens, None)
            if value is not None:
                out.append(value)
                after_set = True
        elif token.startswith(SET_FLAG + "="):
            after_set = True
    return out


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose sub-commands' ``--set`` take one value per occurrence (see the module doc)."""

    def parse_known_args(self, args=None, namespace=None):
        if args is not None and any(SET_FLAG in action.option_strings for action in self._actions):
            args = split_set_values(list(args))
        return super().parse_known_args(args, namespace)


def _one_value_per_set(parser: argparse.ArgumentParser) -> None:
    """Make every ``--set`` below ``parser`` take exactly one value (``split_set_values`` spreads more)."""
    for action in parser._actions:
        if SET_FLAG in action.option_strings:
            action.nargs = 1
        elif isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _one_value_per_set(sub)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, what a command-line flag asks for and this machine cannot do
    (before the command turns the flag into a config value whose error would name the key instead)."""
    from .errors import ConfigError

    views = getattr(args, "views", None)
    if isinstance(views, str):  # test, predict: the same check as eval.views, naming the flag
        from .config import parse_views

        try:
            parse_views(views)
        except ConfigError as error:
            raise ConfigError(str(error).replace("config key 'eval.views'", "--views", 1)) from None
    device = getattr(args, "device", None)
    if isinstance(device, str):
        check_cuda_flag(device)


def check_cuda_flag(device: str, flag: str = "--device") -> None:
    """A ConfigError naming ``flag`` when ``device`` is CUDA and this machine has none."""
    if not device.startswith("cuda"):
        return
    import torch

    from .errors import ConfigError

    if not torch.cuda.is_available():
        why = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        raise ConfigError(f"{flag}: got {device!r} but {why}; use {flag} cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="videoattn",
        description="Spatio-temporal attention for video action recognition: train, evaluate, "
        "profile and compare GTA, Non-local and related models.",
    )
    parser.add_argument("--version", action="version", version=f"videoattn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    _one_value_per_set(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        check_flags(args)
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
