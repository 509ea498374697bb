"""Config files and their bases: ``base: ../gta/r2d50_ssv1_8f.yaml`` and ``videoattn config show``.

A YAML config may name one base file (``base: PATH``, relative to the file that names it). The base is
read first (itself resolved the same way, so bases chain), then the file is merged onto it key by key:
mappings merge recursively (``model.options`` and ``model.options.block_options`` included), any other
value (a scalar, a list, ``null``) replaces the base's. A chain that comes back to a file it already
read is refused with one line naming the files. The result is the plain mapping
:func:`videoattn.config.load_config` validates, without the ``base`` key.

``videoattn config show FILE [--set KEY=VALUE ...]`` prints the resolved, validated config as YAML.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from .errors import ConfigError

BASE_KEY = "base"


def _read_mapping(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(error).split())}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {error.start}: "
                          f"{error.reason})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r}: expected a mapping of sections at the top level")
    return raw


def merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """``delta`` merged onto a copy of ``base``: mappings recursively, everything else replaced."""
    out = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a config file describes: its base chain resolved and merged, ``base`` removed."""
    chain: list[Path] = []
    current = Path(path)
    layers: list[dict[str, Any]] = []
    while True:
        resolved = current.resolve()
        if resolved in chain:
            loop = " -> ".join(str(p) for p in [*chain[chain.index(resolved):], resolved])
            raise ConfigError(f"config file {str(path)!r}: its bases form a cycle ({loop})")
        chain.append(resolved)
        raw = _read_mapping(current)
        base = raw.pop(BASE_KEY, None)
        layers.append(raw)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ConfigError(f"config file {str(current)!r}: key 'base' must be the path of another config "
                              f"file (relative to this one), got {base!r}")
        following = current.parent / base
        if not following.is_file():
            raise ConfigError(f"config file {str(current)!r}: base {base!r} does not exist (looked for "
                              f"{str(following)!r})")
        current = following
    out: dict[str, Any] = {}
    for layer in reversed(layers):
        out = merge(out, layer)
    return out


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "config", help="show a config file as it resolves (bases merged, overrides applied)",
        description="Work with config files. 'show' prints FILE with its base chain merged and --set "
        "overrides applied, validated, as the YAML a run saves in its work dir.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print the resolved config",
                              description="Print FILE resolved: bases merged key by key, --set applied, "
                              "every value validated (defaults included).")
    show.add_argument("file", help="a config YAML file")
    show.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                      help="override config values, e.g. --set train.lr=0.02 model.num_frames=16")
    show.set_defaults(func=run_show)
    parser.set_defaults(func=_needs_action(parser))


def _needs_action(parser: argparse.ArgumentParser):
    def run(args) -> int:
        if getattr(args, "action", None) is None:
            parser.print_help()
            return 2
        return 0

    return run


def run_show(args) -> int:
    from .config import config_to_yaml, load_config

    print(config_to_yaml(load_config(args.file, args.overrides)), end="")
    return 0
