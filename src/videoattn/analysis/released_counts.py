"""Counts as the papers' releases reported them, reconciled with ours (``docs/model_zoo.md``).

``rnl_release_count``: the RNL release stores each depthwise region kernel densely with a frozen mask
and its counter skips that convolution; this gives its Table III figures back from our honest count.
"""

from __future__ import annotations

import torch

from .complexity import Complexity, profile_model


def _dense_masked_extra(width: int, volume: int) -> int:
    """Parameters the release stores beyond a true depthwise kernel ``(width, 1, volume)``: a dense
    ``(width, width / groups, volume)`` weight with ``groups = max(width // 32, 1)`` plus a frozen
    mask of the same size (both ``nn.Parameter``s, so both counted)."""
    per_group = width // max(width // 32, 1)
    return 2 * width * per_group * volume - width * volume


def rnl_release_count(name: str = "tsm50_rnl", num_classes: int = 400, num_frames: int = 8, size: int = 224,
                      **overrides) -> tuple[Complexity, Complexity]:
    """``(ours, as_released)``: our thop count of preset ``name``, and the count the RNL release
    reports for the same model (Table III): each depthwise region kernel stored densely with its
    mask (:func:`_dense_masked_extra`), and its conv's MACs left out (the release applies it with
    ``F.conv3d``, which a module-hook counter does not see)."""
    from ..models import create_model

    ours = profile_model(name, num_classes=num_classes, num_frames=num_frames, size=size, convention="thop",
                         **overrides)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, num_frames=num_frames, **overrides)
        extra_params, region_macs, hooks = 0, [], []
        for module in model.modules():
            if getattr(module, "registered_block_name", None) == "rnl" and module.aggregation == "conv":
                weight = module.region.weight
                extra_params += _dense_masked_extra(weight.shape[0], weight[0].numel())
                hooks.append(module.region.register_forward_hook(
                    lambda mod, args, out: region_macs.append(out.numel() * mod.weight[0].numel())))
        model.eval()
        model(torch.empty(1, 3, num_frames, size, size))
    for hook in hooks:
        hook.remove()
    released = Complexity(name, "thop (RNL release)", ours.params + extra_params, ours.macs - sum(region_macs),
                          ours.input_shape)
    return ours, released
