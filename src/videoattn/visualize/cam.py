"""Grad-CAM (Selvaraju et al. 2017) over the frames of a clip, for any recognizer.

The feature maps ``A`` ``(T', C, h, w)`` are a backbone *stage output*: the output of the last stage
whose map is larger than 1 x 1 (a stage's output is that of its last unit: residual block, inception
module), captured by forward hooks (the forward itself is untouched). The gradient of the chosen class's
logit with respect to them gives one weight per channel and frame, ``alpha_c(t) = mean_{h,w} dy/dA_c(t)``,
and the map of frame t is ``ReLU(sum_c alpha_c(t) A_c(t))``, upsampled onto the input frame.

A backbone of several pathways (SlowFast) contributes every pathway's stage output: the terms
``sum_c alpha_c A_c`` of each pathway are summed on the time axis of the longest one (frame t of the
fast pathway meets frame ``t * T_slow // T_fast`` of the slow one) before the ReLU, which is Grad-CAM
of the pathways' maps concatenated along the channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..errors import ConfigError
from .figures import Row, clip_frame_index, draw_rows
from .loading import Clip

__all__ = ["cam_figure", "grad_cam", "stage_outputs"]


def stage_outputs(backbone: nn.Module, num_frames: int) -> list[tuple[str, list[str]]]:
    """The backbone's stages in order, each with the module paths (one per pathway) whose outputs are
    the stage's output: the last unit of the stage.

    Backbones (or pathways: SlowFast's ``slow``, ``fast``) with ``stages()`` give them directly; any
    other backbone of the protocol through its ``sites()`` (the last unit each stage lists).
    """
    names = {id(module): name for name, module in backbone.named_modules()}
    if callable(getattr(backbone, "stages", None)):
        owners = [backbone]
    else:
        owners = [child for child in backbone.children() if callable(getattr(child, "stages", None))]
    stages: dict[str, list[str]] = {}
    if owners:
        for owner in owners:
            for stage, units in owner.stages():
                if len(units):
                    stages.setdefault(stage, []).append(names[id(units[-1])])
        return list(stages.items())
    sites = getattr(backbone, "sites", None)
    if not callable(sites):
        raise ConfigError(f"visualize cam: the backbone ({type(backbone).__name__}) lists no stages (no stages() "
                          f"or sites()) whose output to explain")
    for site in sites(num_frames):
        stages.setdefault(site.stage, [])
        if site.unit_path not in stages[site.stage]:
            stages[site.stage].append(site.unit_path)
    return [(stage, units[-1:]) for stage, units in stages.items()]


def _frames_first(tensor: torch.Tensor) -> torch.Tensor:
    """A unit's output as ``(T', C, h, w)`` of the clip (batch 1): frame-batched maps stay as they are,
    ``(1, C, T, H, W)`` video-layout maps are transposed."""
    return tensor[0].transpose(0, 1) if tensor.dim() == 5 else tensor


def grad_cam(model: nn.Module, video: torch.Tensor,
             class_index: int | None = None) -> tuple[np.ndarray, int, torch.Tensor, str]:
    """Grad-CAM maps ``(T', h, w)`` (each in [0, 1]) of clip ``video`` ``(1, 3, T, H, W)`` for
    ``class_index`` (default: the predicted class), that class, the logits and the explained stage
    output (e.g. ``"res4 output (layer3.5)"``)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ConfigError("visualize cam: the model has no 'backbone' module to read feature maps from")
    stages = stage_outputs(backbone, int(video.shape[2]))
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def keep(_module, _args, output):
            features = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(features, torch.Tensor) and features.dim() in (4, 5):
                captured[name] = features
        return keep

    # Hooks only on whole units (residual blocks, inception modules), never inside an inserted block: a
    # hook on a block's projections would make it run them one by one instead of as one fused GEMM (the
    # same function, but not bit-identical).
    handles = [backbone.get_submodule(path).register_forward_hook(hook(path))
               for _, paths in stages for path in paths]
    try:
        with torch.enable_grad():
            logits = model(video.detach())
            chosen = int(logits[0].argmax()) if class_index is None else int(class_index)
            if not 0 <= chosen < logits.shape[-1]:
                raise ConfigError(f"visualize cam: --class {chosen} is out of range for a model with "
                                  f"{logits.shape[-1]} classes")
            usable = [(stage, paths) for stage, paths in stages
                      if all(path in captured and captured[path].requires_grad
                             and captured[path].shape[-1] * captured[path].shape[-2] > 1 for path in paths)]
            if not usable:
                sizes = ", ".join(f"{stage} {'/'.join('x'.join(map(str, captured[p].shape[-2:])) for p in paths)}"
                                  for stage, paths in stages if all(p in captured for p in paths))
                raise ConfigError(f"visualize cam: no backbone stage output is larger than 1x1 for this "
                                  f"{video.shape[-2]}x{video.shape[-1]} clip ({sizes}); use larger frames")
            stage, paths = usable[-1]
            features = [captured[path] for path in paths]
            gradients = torch.autograd.grad(logits[0, chosen], features)
    finally:
        for handle in handles:
            handle.remove()
    terms = []
    for feature, gradient in zip(features, gradients):
        feature, gradient = _frames_first(feature.detach()), _frames_first(gradient)
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        terms.append((weights * feature).sum(dim=1))  # (T_p, h, w)
    frames = max(term.shape[0] for term in terms)
    height, width = max(term.shape[1] for term in terms), max(term.shape[2] for term in terms)
    total = torch.zeros(frames, height, width, dtype=terms[0].dtype)
    for term in terms:
        if term.shape[1:] != (height, width):
            term = F.interpolate(term[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        total += term[[clip_frame_index(t, frames, term.shape[0]) for t in range(frames)]]
    cam = F.relu(total)
    cam = cam / cam.amax().clamp_min(1e-12)  # one scale for all frames, so frames compare
    return cam.numpy(), chosen, logits.detach()[0], f"{stage} output ({' + '.join(paths)})"


def cam_figure(model: nn.Module, clip: Clip, out: Path, class_index: int | None = None) -> list[Path]:
    cam, chosen, logits, layer = grad_cam(model, clip.video, class_index)
    num_frames, height, width = clip.frames.shape[:3]
    upsampled = F.interpolate(torch.from_numpy(cam)[:, None], size=(height, width), mode="bilinear",
                              align_corners=False)[:, 0].numpy()
    maps = [upsampled[clip_frame_index(t, num_frames, cam.shape[0])] for t in range(num_frames)]
    probs = logits.softmax(-1)
    name = clip.classes[chosen] if chosen < len(clip.classes) else f"class {chosen}"
    top = int(probs.argmax())
    top_name = clip.classes[top] if top < len(clip.classes) else f"class {top}"
    row = Row(f"Grad-CAM\n{name}", maps, vmin=0.0, vmax=1.0, alpha=0.5)
    return [draw_rows(clip.frames, [row], out / "cam.png",
                      f"Grad-CAM for '{name}' (p={100 * float(probs[chosen]):.0f}%; predicted: {top_name}) "
                      f"of {layer}; red = evidence for the class")]
