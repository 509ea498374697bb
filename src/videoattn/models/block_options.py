"""``block_options``: the one rule by which a model's overrides reach the blocks of its insertion plan.

Every builder (:func:`~videoattn.models.recognizer.build_recognizer`, the image classifier, BN-Inception,
SlowFast, TSM+RNL) passes its ``block_options`` argument through :func:`apply_block_options`, so a preset's
blocks take the same overrides whichever backbone they sit in. The rule:

* **Shift blocks** (``tsm``: the temporal shift a ``tsm`` variant puts before every ``conv1``) take no
  ``block_options``; their only option, ``n_div``, is the builder's ``tsm_n_div``.
* **Plain blocks** receive every option they take: ``{"num_groups": 4}`` reaches each GTA block.
* **Composites** (``decoupled``, ``chain``) pass options through to their inner blocks, never to
  themselves: a flat option reaches every inner block that takes it; ``{"spatial": {...}}`` /
  ``{"temporal": {...}}`` address one part of a ``decoupled`` block; ``{"<block name>": {...}}`` addresses
  every block of that name anywhere in the model (``{"se_add": {"reduction": 8}}`` in an SE+RNL chain).
  A role or name is an address only when its value is a mapping (``tape`` has a boolean ``spatial``
  option of its own).
* An option that no block of the model takes, or an addressed option its block does not take, is a
  :class:`BlockOptionsError` naming the block and the option (``create_model`` adds the preset).

Options given here override the preset's own options of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .. import blocks as block_registry
from ..errors import ConfigError

SHIFT_BLOCKS = frozenset({"tsm"})
COMPOSITE_ROLES = {"decoupled": ("spatial", "temporal"), "chain": ("blocks",)}
_PART_ROLES = ("spatial", "temporal")


class BlockOptionsError(ConfigError):
    """``block_options`` names an option no block of the model takes (``create_model`` adds the preset)."""


def _accepts(name: str) -> tuple[list[str], bool]:
    spec = block_registry.get_block_spec(name)
    return spec.option_names(), spec.accepts_any_option()


def _ref(value: Any) -> tuple[str, dict] | None:
    """A composite's block reference (``"name"`` or ``{name, options}``) as ``(name, options)``; None for
    anything else (an ``nn.Module`` or None), which is left alone."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return value["name"], dict(value.get("options") or {})
    return None


class _Router:
    def __init__(self, block_options: Mapping):
        names = set(block_registry.list_blocks())
        self.addressed = {k: dict(v) for k, v in block_options.items()
                          if isinstance(v, Mapping) and (k in names or k in _PART_ROLES)}
        self.flat = {k: v for k, v in block_options.items() if k not in self.addressed}
        self.used: set[str] = set()
        self.leaves: dict[str, list[str]] = {}  # leaf block -> the options it accepts (for the error)

    def leaf(self, name: str, options: dict, role: str | None) -> dict:
        accepted, any_option = _accepts(name)
        self.leaves.setdefault(name, accepted)
        out = dict(options)
        for key, value in self.flat.items():
            if any_option or key in accepted:
                out[key] = value
                self.used.add(key)
        for address in (role, name):
            if address is None or address not in self.addressed:
                continue
            for key, value in self.addressed[address].items():
                if not any_option and key not in accepted:
                    raise BlockOptionsError(
                        f"block_options[{address!r}] has option {key!r}, which block {name!r} does not take "
                        f"(it takes: {', '.join(accepted) or '(none)'})")
                out[key] = value
            self.used.add(address)
        return out

    def block(self, name: str, options: dict, role: str | None = None) -> dict:
        if name in SHIFT_BLOCKS:
            return options
        if name not in COMPOSITE_ROLES:
            return self.leaf(name, options, role)
        out = dict(options)
        if name == "decoupled":
            for part in _PART_ROLES:
                out[part] = self.inner(out.get(part), part)
        else:
            items = out.get("blocks")
            if isinstance(items, Sequence) and not isinstance(items, (str, Mapping)):
                out["blocks"] = [self.inner(item, None) for item in items]
        return out

    def inner(self, value: Any, role: str | None) -> Any:
        ref = _ref(value)
        if ref is None:
            return value
        name, options = ref
        new = self.block(name, options, role)
        return value if new == options else {"name": name, "options": new}

    def check_all_used(self) -> None:
        unused = [k for k in (*self.flat, *self.addressed) if k not in self.used]
        if not unused:
            return
        key = unused[0]
        if not self.leaves:
            raise BlockOptionsError(f"block_options has option {key!r}, but no block is inserted to take it "
                                    "(a tsm variant's shift is set by tsm_n_div)")
        if key in self.addressed:
            raise BlockOptionsError(f"block_options addresses {key!r}, which is no block or decoupled part of "
                                    f"this model (its blocks: {', '.join(self.leaves)})")
        takes = "; ".join(f"block {b!r} takes: {', '.join(a) or '(none)'}" for b, a in self.leaves.items())
        raise BlockOptionsError(f"block_options has option {key!r}, which no block of this model takes ({takes})")


def apply_block_options(insertions: Sequence, block_options: Mapping | None) -> list:
    """``insertions`` (``BlockInsertion`` s or mappings) with ``block_options`` applied by the module's rule;
    returns :class:`~videoattn.models.recognizer.BlockInsertion` s. Raises :class:`BlockOptionsError`
    (before anything is built) for an option no block takes."""
    from .recognizer import BlockInsertion

    coerced = [BlockInsertion.coerce(b) for b in insertions]
    if not block_options:
        return coerced
    if not isinstance(block_options, Mapping) or not all(isinstance(k, str) for k in block_options):
        raise BlockOptionsError(f"block_options must map option names to values, got {block_options!r}")
    router = _Router(block_options)
    out = [replace(b, options=router.block(b.name, dict(b.options))) for b in coerced]
    router.check_all_used()
    return out
