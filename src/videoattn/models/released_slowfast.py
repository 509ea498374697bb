"""Checkpoint layout of PySlowFast (``pyslowfast``), mapped onto the SlowFast presets
(``presets_slowfast.py``): ``load_weights(model, path, "pyslowfast")``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones.slowfast import pysf_key
from ..errors import CheckpointError
from .released import register_layout


@register_layout("pyslowfast", "PySlowFast SlowFast checkpoint ('model_state': s1.pathway0_stem.conv, "
                 "s2.pathway1_res0.branch2.a, s1_fuse.conv_f2s, head.projection)")
def _convert_pyslowfast(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """PySlowFast's names -> ours; 1x1x1 / 1xkxk kernels of our 2D convolutions lose their time axis.
    Keys with no counterpart (its non-local blocks) keep their names and are reported as unexpected; a
    classifier for another number of classes is left out (reported as missing ``fc.*``)."""
    target = model.state_dict()
    converted = {}
    for key, value in state.items():
        ours = pysf_key(key)
        if ours is None:
            converted[key] = value
            continue
        want = target.get(ours)
        if want is not None and value.dim() == 5 and want.dim() == 4:
            if value.shape[2] != 1:
                raise CheckpointError(f"PySlowFast key {key!r} has temporal kernel {value.shape[2]} but "
                                      f"{ours!r} is a 2D convolution of shape {tuple(want.shape)} (another "
                                      "temporal-kernel layout than SlowFast's?)")
            value = value[:, :, 0]
        if ours.startswith("fc.") and want is not None and want.shape != value.shape:
            continue  # a classifier for another class count (fine-tuning): fc stays at its initialisation
        converted[ours] = value
    return converted
