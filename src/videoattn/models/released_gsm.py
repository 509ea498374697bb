"""Checkpoint layouts of the GSM release (swathikirans/GSM) and the SA-GSM release (dpstart/SA-GSM), both
TSN-style BN-Inception models, mapped onto ``bninception_gsm`` and ``bninception_sagsm``.

Their training scripts save ``{"state_dict": DataParallel(VideoModel).state_dict(), ...}``: keys
``module.base_model.<BN-Inception layer>`` and ``module.new_fc.*`` (the classifier after dropout; with
dropout 0 it is ``base_model.fc.*`` instead). ``base_model`` is the Caffe-derived BN-Inception with flat
layer names (``inception_3a_1x1``, ``inception_3a_1x1_bn``, ...; BN tensors ``(C,)`` as trained) and one
gate-shift module per inception module, between its first 1x1 convolution and that convolution's BN:
``gsm_inception_<m>_1x1`` (``gsm_inception_<m>_3x3_reduce`` in 3c and 4e). Inside one:

* ``conv3D.weight`` ``(2, C/2, 3, 3, 3)``, ``conv3D.bias`` ``(2,)``: the gate -> our ``gate.*``;
* ``bn.*``: the BatchNorm3d the gate reads through -> our ``gate_bn.*`` (``gate_norm=True``);
* SA-GSM only, ``attn.*`` (SAGAN self-attention within each frame, applied to the module's output):
  ``query_conv`` and ``key_conv`` ``(C/8, C, 1, 1)``, ``value_conv`` ``(C, C, 1, 1)``, ``gamma`` ``(1,)``.
  The release's position i attends with ``softmax_j(query_i . key_j)`` over ``value_j``; ours attends
  at j with ``softmax_i(f_i . g_j)`` over ``h_i`` (``blocks/gsm.py``), so ``query_conv`` -> ``g``,
  ``key_conv`` -> ``f``, ``value_conv`` -> ``h`` (C -> C, no ``v``: ``value="released"``); the 2D kernels
  gain a unit time dimension.

Both releases shift the first half of the channels to the *next* frame's position and interleave each
half's channels at the end (``released_order=True``), and gate ``ReLU(BN(x))`` (``gate_norm=True``). The
loader sets these options (and ``value="released"`` for SA-GSM) on the model's blocks in place before
filling them, and logs what it changed. Their inputs are BGR in [0, 255] minus (104, 117, 128), which
the BN-Inception backbone's default ``input_convention="caffe_bgr"`` provides. Not mapped: the GSM
release's InceptionV3 models, and the SA-GSM repository's ``attention_inception_*`` modules (a
sequence-to-sequence ``Attention`` experiment of its ``BNInception_gsm_attention``, not the SA-GSM
model); their keys are reported as unexpected.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from ..backbones.bninception import BNInception
from ..errors import CheckpointError
from .released import register_layout

log = logging.getLogger(__name__)

_MODULE = re.compile(r"^gsm_inception_([345][a-e])_(?:1x1|3x3_reduce)\.(.+)$")
_GATE_KEYS = {"conv3D.": "gate.", "bn.": "gate_bn."}
_ATTENTION_KEYS = {"attn.query_conv.": "g.", "attn.key_conv.": "f.", "attn.value_conv.": "h."}
_PRESETS = {"gsm": "bninception_gsm", "sa_gsm": "bninception_sagsm"}


def _configure_blocks(layout: str, model: nn.Module) -> None:
    """Give every gate-shift block of ``model`` the release's options, refusing a model that has none of
    the layout's blocks or has the other family's."""
    other = "sa_gsm" if layout == "gsm" else "gsm"
    blocks = [(n, m) for n, m in model.named_modules() if getattr(m, "registered_block_name", None) == layout]
    foreign = [n for n, m in model.named_modules() if getattr(m, "registered_block_name", None) == other]
    if foreign or not blocks:
        found = f"'{other}' blocks (e.g. {foreign[0]})" if foreign else "no gate-shift blocks"
        raise CheckpointError(f"the {layout} layout fills '{layout}' blocks ({_PRESETS[layout]}); this model has "
                              f"{found}: build {_PRESETS[layout]} or load with weights_layout {other!r}")
    for name, block in blocks:
        if layout == "gsm":
            changed = block.set_released_options(gate_norm=True, released_order=True)
        else:
            changed = block.set_released_options(gate_norm=True, released_order=True, value="released")
        if changed:
            log.info("%s layout: block %s set to the release's options (%s)", layout, name, ", ".join(changed))


def _block_key(layout: str, rest: str, prefix: str) -> str | None:
    """Our key for ``rest`` inside a released module, or None when it has no counterpart."""
    gate_prefix = prefix + ("gsm." if layout == "sa_gsm" else "")
    for theirs, ours in _GATE_KEYS.items():
        if rest.startswith(theirs):
            return gate_prefix + ours + rest[len(theirs):]
    if layout == "sa_gsm":
        if rest == "attn.gamma":
            return prefix + "attention.gamma"
        for theirs, ours in _ATTENTION_KEYS.items():
            if rest.startswith(theirs):
                return prefix + "attention." + ours + rest[len(theirs):]
    return None


def convert_gsm_family(layout: str, state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``gsm`` / ``sa_gsm`` converter (module docstring)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, BNInception):
        raise CheckpointError(f"the {layout} layout maps BN-Inception models ({_PRESETS[layout]}); this model's "
                              f"backbone is {type(backbone).__name__}")
    if layout == "gsm" and any(_MODULE.match(k.removeprefix("base_model.")) and ".attn." in k for k in state):
        raise CheckpointError("this checkpoint's gate-shift modules carry self-attention (attn.*): it is an SA-GSM "
                              "model; load it into bninception_sagsm with weights_layout 'sa_gsm'")
    _configure_blocks(layout, model)
    adapt = model.backbone.adapt_pretrained_state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("new_fc.") or key.startswith("base_model.fc."):
            out["fc." + key.split("fc.", 1)[1]] = value
            continue
        if not key.startswith("base_model."):
            out[key] = value  # reported as unexpected
            continue
        name = key.removeprefix("base_model.")
        match = _MODULE.match(name)
        if not match:
            out.update({"backbone." + k: v for k, v in adapt({name: value}).items()})
            continue
        unit, rest = match.groups()
        ours = _block_key(layout, rest, f"backbone.inception_{unit}.before_1x1_bn.")
        if ours is None:
            out[key] = value  # reported as unexpected
            continue
        if rest.startswith("attn.") and rest != "attn.gamma" and value.dim() == 4:
            value = value.unsqueeze(2)  # Conv2d (O, I, 1, 1) -> our Conv3d (O, I, 1, 1, 1)
        out[ours] = value
    return out


@register_layout("gsm", "GSM authors' release (swathikirans/GSM): TSN BN-Inception, module.base_model.* with "
                 "gsm_inception_*.{conv3D,bn}, new_fc; sets gate_norm and released_order (bninception_gsm)")
def convert_gsm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return convert_gsm_family("gsm", state, model)


@register_layout("sa_gsm", "SA-GSM authors' release (dpstart/SA-GSM): as 'gsm' plus gsm_inception_*.attn.{query,"
                 "key,value}_conv, gamma; sets gate_norm, released_order and value='released' (bninception_sagsm)")
def convert_sa_gsm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return convert_gsm_family("sa_gsm", state, model)
