"""``data.transforms_on: device``: the training crop / resize / flip / normalise applied to a batch on the
model's device.

With ``transforms_on: cpu`` a loader worker returns finished float clips ``(C, T, size, size)``. With
``device`` it returns the sampled frames as decoded, uint8 ``(T, H, W, C)`` (about a quarter of the
bytes of a float crop at 224 px from 240 x 320 frames, and no float copies in the worker), together
with the random choices the CPU path would have made for that clip, drawn from the same generator in
the same order (:meth:`~videoattn.data.transforms.ClipTransform.train_box`): the crop box in decoded
pixels ``crop_box = (top, bottom, left, right)`` and ``flip`` (the label is already mapped by the
flip policy in the worker). The training step calls :func:`transform_batch_on_device` after moving
the batch to the device. The crop and the resize are the CPU path's own operations
(:func:`~videoattn.data.transforms.pixel_box`, :func:`~videoattn.data.transforms.resize_patch`), so on
a CPU device the clips are bit-identical to the CPU path's; on CUDA they differ by the interpolation
kernel's rounding only.

Clips of one batch whose videos have different frame sizes are zero-padded to the largest by the
collate function; every crop box lies inside its own clip's frames, so the padding is never read.
Clips with the same crop size are resized in one interpolation call.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .transforms import ClipTransform, resize_patch

__all__ = ["TRANSFORMS_ON", "resolve_transforms_on", "transform_batch_on_device", "stack_frames"]

TRANSFORMS_ON = ("auto", "cpu", "device")


def resolve_transforms_on(setting: str, device: torch.device | str, dataset) -> str:
    """``"cpu"`` or ``"device"`` for ``data.transforms_on`` = ``setting`` when training on ``device``.

    ``auto`` is ``device`` on CUDA when the dataset supports it, ``cpu`` otherwise. ``device`` with a
    dataset that cannot (image folders, colour jitter) is a :class:`ConfigError` saying why. A dataset
    that decodes in the training process (``data.decoder: dali``/``nvjpeg``) always gets ``device``; ``cpu`` is
    refused.
    """
    if setting not in TRANSFORMS_ON:
        raise ConfigError(f"config key 'data.transforms_on': got {setting!r}; expected one of {TRANSFORMS_ON}")
    why_not = getattr(dataset, "device_transforms_unsupported", lambda: "the dataset has no device path")()
    if getattr(dataset, "decodes_in_main_process", False):  # data.decoder: dali, nvjpeg
        name = getattr(dataset, "decoder_backend", "dali")
        if why_not is not None:
            raise ConfigError(f"config key 'data.decoder': {name!r} decodes in the training process, where the "
                              f"training transforms must then run too, but {why_not}; use data.decoder=auto")
        if setting == "cpu":
            raise ConfigError(f"config key 'data.transforms_on': 'cpu' does not go with data.decoder {name!r}, "
                              "which decodes in the training process (the transforms follow it there); use "
                              "'auto' or 'device'")
        return "device"
    if setting == "auto":
        return "device" if torch.device(device).type == "cuda" and why_not is None else "cpu"
    if setting == "device" and why_not is not None:
        raise ConfigError(f"config key 'data.transforms_on': 'device' is not available here: {why_not}; "
                          "use 'cpu' or 'auto'")
    return setting


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` clips -> ``(N, T, H_max, W_max, C)``, zero-padded at the bottom/right."""
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) == 1:
        return torch.stack(frames)
    num_frames = {f.shape[0] for f in frames}
    if len(num_frames) != 1:
        raise ConfigError(f"clips of one batch have different numbers of frames: {sorted(num_frames)}")
    height = max(f.shape[1] for f in frames)
    width = max(f.shape[2] for f in frames)
    out = torch.zeros((len(frames), frames[0].shape[0], height, width, frames[0].shape[3]), dtype=frames[0].dtype,
                      device=frames[0].device)
    for i, f in enumerate(frames):
        out[i, :, :f.shape[1], :f.shape[2]] = f
    return out


def transform_batch_on_device(frames: torch.Tensor, crop_box: torch.Tensor, flip: torch.Tensor,
                              transform: ClipTransform) -> torch.Tensor:
    """uint8 ``(N, T, H, W, C)`` frames (on the target device) -> float32 ``(N, C, T, size, size)`` clips.

    ``crop_box``: ``(N, 4)`` integer ``(top, bottom, left, right)`` per clip; ``flip``: ``(N,)`` bool.
    The arithmetic is the CPU path's (crop, antialiased bilinear resize, clamp, mirror, ``(x - 255 mean)
    / (255 std)`` in float32).
    """
    if frames.ndim != 5 or frames.dtype != torch.uint8:
        raise ConfigError(f"device transforms take uint8 (N, T, H, W, C) frames, got {frames.dtype} "
                          f"{tuple(frames.shape)}")
    boxes = [tuple(int(v) for v in row) for row in torch.as_tensor(crop_box).tolist()]
    if len(boxes) != frames.shape[0]:
        raise ConfigError(f"{len(boxes)} crop boxes for a batch of {frames.shape[0]} clips")
    size = (transform.size, transform.size)
    num, frames_per_clip = frames.shape[:2]
    out = torch.empty((num, frames_per_clip, frames.shape[-1], *size), dtype=torch.float32, device=frames.device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (top, bottom, left, right) in enumerate(boxes):
        groups.setdefault((bottom - top, right - left), []).append(i)
    for members in groups.values():
        patches = torch.stack([frames[i, :, t:b, l:r] for i in members for t, b, l, r in [boxes[i]]])
        patches = patches.permute(0, 1, 4, 2, 3).float()  # (k, T, C, h, w)
        resized = resize_patch(patches.flatten(0, 1), size)
        out[members] = resized.view(len(members), frames_per_clip, *resized.shape[1:])
    flips = torch.as_tensor(flip, dtype=torch.bool).to(frames.device)
    if bool(flips.any()):
        out[flips] = out[flips].flip(-1)
    mean = torch.tensor(transform.mean, dtype=torch.float32).view(1, 1, -1, 1, 1).to(frames.device) * 255.0
    std = torch.tensor(transform.std, dtype=torch.float32).view(1, 1, -1, 1, 1).to(frames.device) * 255.0
    return ((out - mean) / std).permute(0, 2, 1, 3, 4).contiguous()
