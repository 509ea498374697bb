"""String factory for spatio-temporal blocks: ``create(name, channels, num_frames=None, **options)``.

Every block is a plain ``nn.Module`` mapping ``(N, C, T, H, W)`` to ``(N, C, T, H, W)``. A block
family registers its constructors with :func:`register_block`; the registry checks option names
before construction so a typo fails with the block's name and the options it accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError, unknown_name


@dataclass(frozen=True)
class BlockSpec:
    name: str
    factory: Callable[..., nn.Module]
    needs_num_frames: bool
    description: str

    def option_names(self) -> list[str]:
        params = inspect.signature(self.factory).parameters
        return [p for p in params if p not in ("self", "channels", "num_frames")]

    def accepts_any_option(self) -> bool:
        params = inspect.signature(self.factory).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


_BLOCKS: dict[str, BlockSpec] = {}


def register_block(name: str, *, needs_num_frames: bool = False, description: str = ""):
    """Decorator registering a block class (or factory function) under ``name``.

    The factory is called as ``factory(channels, num_frames=..., **options)`` when it takes a
    ``num_frames`` argument, else ``factory(channels, **options)``.
    """

    def decorator(factory):
        if name in _BLOCKS:
            raise ValueError(f"block {name!r} is registered twice")
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _BLOCKS[name] = BlockSpec(name, factory, needs_num_frames, doc)
        return factory

    return decorator


def list_blocks() -> list[str]:
    """Names of all registered blocks, sorted."""
    return sorted(_BLOCKS)


def get_block_spec(name: str) -> BlockSpec:
    try:
        return _BLOCKS[name]
    except KeyError:
        raise unknown_name("block", name, list(_BLOCKS)) from None


def create(name: str, channels: int, num_frames: int | None = None, **options) -> nn.Module:
    """Build the block ``name`` for ``channels`` input channels and ``num_frames`` frames."""
    spec = get_block_spec(name)
    if not isinstance(channels, int) or channels <= 0:
        raise ConfigError(f"block {name!r}: channels must be a positive int, got {channels!r}")
    if spec.needs_num_frames and (not isinstance(num_frames, int) or num_frames <= 0):
        raise ConfigError(
            f"block {name!r} learns parameters sized by the number of frames: pass num_frames=T "
            f"(a positive int), got {num_frames!r}"
        )
    if not spec.accepts_any_option():
        allowed = spec.option_names()
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"block {name!r} has no option(s) {', '.join(unknown)}; "
                f"it accepts: {', '.join(allowed) or '(none)'}"
            )
    params = inspect.signature(spec.factory).parameters
    if "num_frames" in params:
        module = spec.factory(channels, num_frames=num_frames, **options)
    else:
        module = spec.factory(channels, **options)
    module.registered_block_name = name
    return module


def is_registered_block(module: nn.Module) -> bool:
    """True for a module built by :func:`create` (an inserted block, as opposed to backbone layers)."""
    return getattr(module, "registered_block_name", None) is not None


def registered_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of the outermost registered blocks inside ``model``."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_registered_block(module) and not any(name.startswith(prefix + ".") for prefix, _ in found):
            found.append((name, module))
    return found
