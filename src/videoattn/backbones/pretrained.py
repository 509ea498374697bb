"""Load ImageNet weights into a backbone from a local file (torchvision or timm), never from the network.

The file may be a bare state dict or a dict holding one under ``state_dict``/``model``; ``module.``
(DataParallel) and ``backbone.`` prefixes are stripped. 2D convolution kernels are inflated for
video models whose convolution is 3D: the 2D kernel is repeated ``kt`` times along time and divided
by ``kt`` (I3D, Carreira & Zisserman 2017), so the inflated network gives its 2D source's output on
a clip of identical frames. Loading is done with ``torch.load(weights_only=True)``: the file cannot
run code.

Loading goes through the backbone protocol (:class:`~videoattn.backbones.base.VideoBackbone`) and
happens after blocks are inserted: the checkpoint's tensors of modules a block replaced (and of units
that train from scratch) are reported as skipped, and the inserted blocks' own tensors, which no
ImageNet file holds, are reported as new rather than missing.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CheckpointError, short_list

log = logging.getLogger(__name__)
_PREFIXES = ("module.", "backbone.", "model.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each key."""

    path: str
    loaded: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored_head: list[str] = field(default_factory=list)
    skipped_replaced: list[str] = field(default_factory=list)  # checkpoint keys of replaced / from-scratch modules
    new_blocks: list[str] = field(default_factory=list)  # model keys of inserted blocks, kept at their init
    loaded_blocks: list[str] = field(default_factory=list)  # inserted blocks' keys the checkpoint filled

    def summary(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors from {self.path}"
            + (f" ({len(self.inflated)} 2D kernels inflated to 3D)" if self.inflated else "")
        ]
        if self.ignored_head:
            lines.append(f"ignored the checkpoint's classifier: {', '.join(self.ignored_head)}")
        if self.skipped_replaced:
            lines.append(f"skipped (module replaced or trained from scratch): {short_list(self.skipped_replaced)}")
        if self.loaded_blocks:
            lines.append(f"{len(self.loaded_blocks)} tensors of inserted blocks loaded from the checkpoint")
        if self.new_blocks:
            lines.append(f"{len(self.new_blocks)} tensors of inserted blocks kept at their initialisation")
        if self.missing:
            lines.append(f"missing (kept at initialisation): {short_list(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (not used): {short_list(self.unexpected)}")
        return "; ".join(lines)


def read_state_dict(path: str | os.PathLike, strip_prefixes: tuple[str, ...] = _PREFIXES) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return its state dict, with ``strip_prefixes`` removed from
    the keys (default: the DataParallel / wrapper prefixes a backbone file may carry)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"pretrained weights file not found: {path} (videoattn never downloads weights; "
                              "pass the path of a local torchvision/timm checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure here means "not a safe tensor file"
        text = str(error)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        detail = (f"it holds pickled {found.group(1)} objects, refused for safety" if found
                  else (text.strip().splitlines() or [type(error).__name__])[0].strip())
        raise CheckpointError(
            f"cannot load {path} as weights with torch.load(weights_only=True): {detail}. "
            "It may be corrupt, not a PyTorch file, or contain pickled code objects (refused for safety)."
        ) from None
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    state = {}
    for key, value in obj.items():
        for prefix in strip_prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state


def load_pretrained(model: nn.Module, path: str | os.PathLike, head_prefix: str | None = None) -> LoadReport:
    """Copy matching tensors of ``path`` into ``model`` (a backbone or image classifier).

    Keys are matched by name, after the backbone's ``adapt_pretrained_state(state) -> state`` (if it
    defines one) has mapped the checkpoint's names and shapes to its own (BN-Inception's released flat
    names; SlowFast's two pathways). A 4D kernel meets a 5D parameter -> inflated; keys under ``head_prefix``
    (default: the backbone's ``pretrained_head_prefix``, ``fc.``) whose shapes differ (another number
    of classes) are reported as an ignored classifier; keys under the backbone's
    ``pretrained_skip_prefixes()`` (replaced modules) are skipped, whatever their shapes. Any other
    shape mismatch raises :class:`CheckpointError` naming the key and both shapes. A file sharing no
    key with the model raises too (it is not a checkpoint of this architecture).
    """
    from ..blocks import registered_blocks  # blocks import backbones' helpers; import at call time

    if head_prefix is None:
        head_prefix = getattr(model, "pretrained_head_prefix", "fc.")
    skip = tuple(model.pretrained_skip_prefixes()) if hasattr(model, "pretrained_skip_prefixes") else ()
    block_prefixes = tuple(name + "." for name, _ in registered_blocks(model))
    source = read_state_dict(path)
    if hasattr(model, "adapt_pretrained_state"):  # the file's names/shapes -> the backbone's own
        source = model.adapt_pretrained_state(source)
    report = LoadReport(path=os.fspath(path))
    target = model.state_dict()
    new_state = {}
    for key, value in source.items():
        if key.startswith(skip):
            report.skipped_replaced.append(key)
            continue
        if key not in target:
            (report.ignored_head if key.startswith(head_prefix) else report.unexpected).append(key)
            continue
        want = target[key]
        if value.shape != want.shape:
            if value.dim() == 4 and want.dim() == 5 and value.shape == want.shape[:2] + want.shape[3:]:
                kt = want.shape[2]
                value = value.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
                report.inflated.append(key)
            elif key.startswith(head_prefix):
                report.ignored_head.append(key)
                continue
            else:
                raise CheckpointError(
                    f"{path}: tensor {key!r} has shape {tuple(value.shape)} but the model expects "
                    f"{tuple(want.shape)} (a different depth or width?)"
                )
        new_state[key] = value.to(dtype=want.dtype)
        report.loaded.append(key)
    if not report.loaded:
        raise CheckpointError(
            f"{path} shares no parameter name with the model; expected names such as "
            f"{short_list(sorted(target), 2)} (found e.g. {short_list(sorted(source), 3)})"
        )
    not_loaded = [k for k in target if k not in new_state and not k.endswith("num_batches_tracked")
                  and not k.startswith(head_prefix)]
    report.new_blocks = sorted(k for k in not_loaded if k.startswith(block_prefixes))
    report.loaded_blocks = sorted(k for k in report.loaded if k.startswith(block_prefixes))
    report.missing = sorted(k for k in not_loaded if not k.startswith(block_prefixes) and not k.startswith(skip))
    model.load_state_dict(new_state, strict=False)
    log.info(report.summary())
    return report
