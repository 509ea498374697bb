"""Grad-CAM (Selvaraju et al. 2017) over the frames of a clip, for any recognizer.

The backbone's last spatial feature maps ``A`` ``(T', C, h, w)`` are captured by forward hooks on the
backbone's modules (the forward itself is untouched); the gradient of the chosen class's logit with respect to
them gives one weight per channel and frame, ``alpha_c(t) = mean_{h,w} dy/dA_c(t)``, and the map of
frame t is ``ReLU(sum_c alpha_c(t) A_c(t))``, upsampled onto the input frame.
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

__all__ = ["cam_figure", "grad_cam"]


def grad_cam(model: nn.Module, video: torch.Tensor,
             class_index: int | None = None) -> tuple[np.ndarray, int, torch.Tensor]:
    """Grad-CAM maps ``(T', h, w)`` (each in [0, 1]) of clip ``video`` ``(1, 3, T, H, W)`` for
    ``class_index`` (default: the predicted class), that class and the logits."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ConfigError("visualize cam: the model has no 'backbone' module to read feature maps from")
    captured: list[tuple[str, torch.Tensor]] = []

    def hook(name):
        def keep(_module, _args, output):
            features = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(features, torch.Tensor) and features.dim() in (4, 5) and features.requires_grad \
                    and features.shape[-1] * features.shape[-2] > 1:
                captured.append((name, features))
        return keep

    # The last spatial feature map the backbone computes (the output of its last stage for ResNets,
    # of the last pathway stage for SlowFast, whose backbone output is already pooled).
    # Never inside an inserted block: a hook on a block's projections would make it run them one by one
    # instead of as one fused GEMM (the same function, but not bit-identical).
    from ..blocks import registered_blocks

    inside = tuple(f"{name}." for name, _ in registered_blocks(backbone))
    handles = [module.register_forward_hook(hook(name)) for name, module in backbone.named_modules()
               if not (name + ".").startswith(inside)]
    try:
        with torch.enable_grad():
            logits = model(video.detach())
            chosen = int(logits[0].argmax()) if class_index is None else int(class_index)
            if not 0 <= chosen < logits.shape[-1]:
                raise ConfigError(f"visualize cam: --class {chosen} is out of range for a model with "
                                  f"{logits.shape[-1]} classes")
            if not captured:
                raise ConfigError("visualize cam: the backbone computes no spatial feature map to explain")
            features = captured[-1][1]
            (gradient,) = torch.autograd.grad(logits[0, chosen], features)
    finally:
        for handle in handles:
            handle.remove()
    if features.dim() == 5:  # (N, C, T, H, W) -> frames first, as the ResNet layout
        features, gradient = (t[0].transpose(0, 1) for t in (features, gradient))
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features).sum(dim=1)).detach()  # (T', h, w)
    cam = cam / cam.amax().clamp_min(1e-12)  # one scale for all frames, so frames compare
    return cam.numpy(), chosen, logits.detach()[0]


def cam_figure(model: nn.Module, clip: Clip, out: Path, class_index: int | None = None) -> list[Path]:
    cam, chosen, logits = grad_cam(model, clip.video, class_index)
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
                      f"Grad-CAM for '{name}' (p={100 * float(probs[chosen]):.0f}%; predicted: {top_name}); "
                      f"red = evidence for the class")]
