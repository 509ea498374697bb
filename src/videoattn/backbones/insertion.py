"""Insertion plans: where blocks go in a backbone, written as data rather than code.

A plan names units (residual blocks, inception modules) by stage and 0-based index inside the
stage, with the stage names the backbone declares (``res2``..``res5`` for ResNets; torchvision calls
them ``layer1``..``layer4``, so ``res3`` block 1 is ``layer2.1``). Accepted forms:

* a named layout: ``"all"`` (every unit), ``"none"``, or one the backbone defines (ResNets:
  ``"five_block"``, the NL/GTA/BAT layout res3 1,3 + res4 1,3,5);
* a string ``"res3: 1,3; res4: 1,3,5"``, where a stage may say ``all`` and a range of stages may be
  written ``"res2-res5: all"``;
* a mapping ``{"res3": [1, 3], "res4": [1, 3, 5]}``.

A plan also has a *position*: the kind of site inside each unit (see the backbone's
``site_kinds``; ResNets have ``after_block``, ``before_conv1``, ``before_residual`` and
``replace_conv2``). Parsing checks the syntax; stage names, indices and the position are checked
against a backbone by :meth:`InsertionPlan.select`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from .base import Site, VideoBackbone, resolve_sites

GENERIC_PLANS: dict[str, object] = {"none": {}, "all": "all"}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


@dataclass(frozen=True)
class InsertionPlan:
    """Which units receive a block (``stages``: stage or ``"a-b"`` range -> indices or ``"all"``; or
    a named layout in ``named``), and at which kind of site (``position``)."""

    stages: Mapping[str, tuple[int, ...] | str] = field(default_factory=dict)
    position: str = "after_block"
    named: str = ""

    def __post_init__(self):
        if not isinstance(self.position, str) or not re.fullmatch(_NAME, self.position):
            raise ConfigError(f"insertion position must be a site kind name such as 'after_block', got "
                              f"{self.position!r}")
        for stage, indices in self.stages.items():
            if not re.fullmatch(rf"{_NAME}(\s*-\s*{_NAME})?", stage):
                raise ConfigError(f"insertion plan names stage {stage!r}; expected a stage name such as 'res3' "
                                  "or a range 'res2-res5'")
            if indices != "all" and (
                not isinstance(indices, tuple) or not all(isinstance(i, int) and i >= 0 for i in indices)
            ):
                raise ConfigError(
                    f"insertion plan for {stage}: expected 'all' or non-negative block indices, got {indices!r}"
                )

    @classmethod
    def parse(cls, spec: InsertionPlan | str | Mapping | None, position: str = "after_block") -> InsertionPlan:
        if isinstance(spec, InsertionPlan):
            return spec
        if spec is None:
            return cls({}, position)
        if isinstance(spec, Mapping):
            return cls({str(k).strip(): _indices(k, v) for k, v in spec.items()}, position)
        if not isinstance(spec, str):
            raise ConfigError(f"insertion plan must be a string or a mapping, got {type(spec).__name__}")
        text = spec.strip()
        if re.fullmatch(_NAME, text):
            return cls({}, position, named=text)
        stages: dict[str, tuple[int, ...] | str] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            if ":" not in part:
                raise ConfigError(
                    f"insertion plan {spec!r}: part {part!r} should look like 'res3: 1,3' "
                    f"(or use a named plan such as {', '.join(GENERIC_PLANS)}, five_block)"
                )
            stage_text, index_text = (s.strip() for s in part.split(":", 1))
            stages[re.sub(r"\s+", "", stage_text)] = _indices(stage_text, index_text)
        return cls(stages, position)

    def resolve(self, stage_names: tuple[str, ...],
                named_plans: Mapping[str, object] | None = None) -> dict[str, tuple[int, ...] | str]:
        """Stage -> indices (or ``"all"``) for a backbone with ``stage_names`` and ``named_plans``."""
        stages = self.stages
        if self.named:
            plans = {**GENERIC_PLANS, **(named_plans or {})}
            if self.named not in plans:
                raise ConfigError(f"insertion plan {self.named!r} is not a named plan of this backbone; "
                                  f"named plans: {', '.join(plans)} (or write 'res3: 1,3')")
            layout = plans[self.named]
            stages = {s: "all" for s in stage_names} if layout == "all" else {
                s: _indices(s, v) for s, v in layout.items()}
        resolved: dict[str, tuple[int, ...] | str] = {}
        for key, indices in stages.items():
            for stage in _stage_range(key, stage_names):
                resolved[stage] = indices
        return resolved

    def select(self, backbone: VideoBackbone, num_frames: int) -> list[Site]:
        """The sites of ``backbone`` this plan puts a block in, in backbone order."""
        chosen = self.resolve(backbone.stage_names, backbone.named_plans)
        sites = resolve_sites(backbone, num_frames, self.position)
        units: dict[str, int] = {}
        for site in backbone.sites(num_frames):
            units[site.stage] = max(units.get(site.stage, 0), site.index + 1)
        for stage, indices in chosen.items():
            bad = [] if indices == "all" else [i for i in indices if i >= units.get(stage, 0)]
            if bad:
                count = units.get(stage, 0)
                raise ConfigError(
                    f"insertion plan puts a block at {stage} index {bad[0]}, but {stage} has only "
                    f"{count} {backbone.unit_name} (indices 0..{count - 1})"
                )
        return [s for s in sites if s.stage in chosen and (chosen[s.stage] == "all" or s.index in chosen[s.stage])]

    def __str__(self) -> str:
        if self.named:
            return self.named
        parts = [f"{s}: {v if v == 'all' else ','.join(map(str, v))}" for s, v in self.stages.items()]
        return "; ".join(parts) or "none"


def _stage_range(key: str, stage_names: tuple[str, ...]) -> list[str]:
    first, _, last = key.partition("-")
    for name in filter(None, (first, last)):
        if name not in stage_names:
            raise ConfigError(f"insertion plan names stage {name!r}, which is not a stage of this backbone; "
                              f"its stages are {', '.join(stage_names)}")
    start, stop = stage_names.index(first), stage_names.index(last or first)
    if stop < start:
        raise ConfigError(f"insertion plan stage range {key!r} runs backwards; write {last}-{first}")
    return list(stage_names[start : stop + 1])


def _indices(stage: str, value) -> tuple[int, ...] | str:
    if isinstance(value, str):
        value = value.strip()
        if value == "all":
            return "all"
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"insertion plan for {stage}: {value!r} is not 'all' or a list of indices") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"insertion plan for {stage}: expected 'all', an index or a list of indices, got {value!r}")
    return tuple(value)
