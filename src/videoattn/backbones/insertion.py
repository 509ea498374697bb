"""Insertion plans: where blocks go in a ResNet, written as data rather than code.

A plan names residual blocks by stage and 0-based index inside the stage, with the stage names of
the papers (``res2``..``res5``; torchvision calls them ``layer1``..``layer4``, so ``res3`` block 1 is
``layer2.1``). Accepted forms:

* a named layout: ``"five_block"`` (NL/GTA/BAT's five blocks: res3 1,3 + res4 1,3,5),
  ``"all"`` (every residual block), ``"none"``;
* a string ``"res3: 1,3; res4: 1,3,5"``, where a stage may say ``all`` (``"res2-res5: all"`` is
  accepted too);
* a mapping ``{"res3": [1, 3], "res4": [1, 3, 5]}``.

A plan also has a *position*: ``"after_block"`` (after the residual addition and ReLU, where NL,
GTA and BAT sit) or ``"before_conv1"`` (in the residual branch before the first convolution, where
TSM shifts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError

STAGES = ("res2", "res3", "res4", "res5")
POSITIONS = ("after_block", "before_conv1")
NAMED_PLANS: dict[str, dict[str, object]] = {
    "none": {},
    "all": {stage: "all" for stage in STAGES},
    "five_block": {"res3": (1, 3), "res4": (1, 3, 5)},
}


@dataclass(frozen=True)
class InsertionPlan:
    """Which residual blocks receive a block, and where inside them."""

    stages: Mapping[str, tuple[int, ...] | str] = field(default_factory=dict)
    position: str = "after_block"

    def __post_init__(self):
        if self.position not in POSITIONS:
            raise ConfigError(f"insertion position {self.position!r} is unknown; expected one of {POSITIONS}")
        for stage, indices in self.stages.items():
            if stage not in STAGES:
                raise ConfigError(f"insertion plan names stage {stage!r}; expected one of {STAGES}")
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
            return cls({str(k): _indices(k, v) for k, v in spec.items()}, position)
        if not isinstance(spec, str):
            raise ConfigError(f"insertion plan must be a string or a mapping, got {type(spec).__name__}")
        text = spec.strip()
        if text in NAMED_PLANS:
            return cls({k: _indices(k, v) for k, v in NAMED_PLANS[text].items()}, position)
        stages: dict[str, tuple[int, ...] | str] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            if ":" not in part:
                raise ConfigError(
                    f"insertion plan {spec!r}: part {part!r} should look like 'res3: 1,3' "
                    f"(or use a named plan: {', '.join(NAMED_PLANS)})"
                )
            stage_text, index_text = (s.strip() for s in part.split(":", 1))
            for stage in _stage_range(stage_text, spec):
                stages[stage] = _indices(stage, index_text)
        return cls(stages, position)

    def indices_for(self, stage: str, num_blocks: int) -> tuple[int, ...]:
        """The 0-based indices of ``stage`` that get a block, checked against its ``num_blocks``."""
        indices = self.stages.get(stage, ())
        if indices == "all":
            return tuple(range(num_blocks))
        bad = [i for i in indices if i >= num_blocks]
        if bad:
            raise ConfigError(
                f"insertion plan puts a block at {stage} index {bad[0]}, but {stage} has only "
                f"{num_blocks} residual blocks (indices 0..{num_blocks - 1})"
            )
        return tuple(indices)

    def __str__(self) -> str:
        parts = [f"{s}: {v if v == 'all' else ','.join(map(str, v))}" for s, v in self.stages.items()]
        return "; ".join(parts) or "none"


def _stage_range(text: str, spec: str) -> list[str]:
    match = re.fullmatch(r"(res[2-5])\s*(?:-\s*(res[2-5]))?", text)
    if not match:
        raise ConfigError(f"insertion plan {spec!r}: {text!r} is not a stage; expected res2..res5")
    first, last = STAGES.index(match.group(1)), STAGES.index(match.group(2) or match.group(1))
    return list(STAGES[first : last + 1])


def _indices(stage: str, value) -> tuple[int, ...] | str:
    if isinstance(value, str):
        value = value.strip()
        if value == "all":
            return "all"
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"insertion plan for {stage}: {value!r} is not 'all' or a list of indices") from None
    if isinstance(value, int):
        return (value,)
    return tuple(value)
