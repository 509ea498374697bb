"""Model and clip loading for ``videoattn visualize``: the same builders, checkpoint loader and
preprocessing as ``videoattn test`` (one centre clip, centre crop: the ``1x1`` view)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config, ModelConfig
from ..errors import ConfigError, DataError

__all__ = ["Clip", "class_names", "load_clip", "load_model", "resolve_config"]


@dataclass
class Clip:
    """One preprocessed clip: ``video`` ``(1, 3, T, H, W)`` as the model gets it, ``frames``
    ``(T, H, W, 3)`` in [0, 1] for drawing (the same pixels, un-normalised), and its source path."""

    video: torch.Tensor
    frames: np.ndarray
    path: str
    classes: list[str] = field(default_factory=list)


def resolve_config(config: Config | str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """``config`` with ``overrides`` applied, a :class:`Config` as well as a path (as ``Predictor``)."""
    from ..deploy.inputs import resolve_config as resolve

    return resolve(config, overrides)


def load_model(config: Config, checkpoint: str | Path | None) -> tuple[nn.Module, ModelConfig]:
    """The model of ``checkpoint`` (built from the model section saved in it, as ``videoattn test``
    does) or, without one, the config's model with its ``model.weights``; in eval mode on the CPU and
    never compiled (visualize hooks into its modules)."""
    from ..engine.evaluation import load_model_for

    model, model_config, _ = load_model_for(config, None if checkpoint is None else str(checkpoint), compile=False)
    return model, model_config


def class_names(config: Config, checkpoint: str | Path | None = None) -> list[str]:
    """The class names figures are labelled with, from the one source ``test``, ``predict`` and
    ``export`` use (:func:`~videoattn.engine.evaluation.class_names_for`: the checkpoint's, else the
    config's dataset's as ``test`` reads them), or [] when neither has any: names only label figures."""
    from ..engine.checkpoint import load_checkpoint
    from ..engine.evaluation import class_names_for
    from ..errors import CheckpointError

    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    try:
        return class_names_for(config, state, checkpoint=None if checkpoint is None else str(checkpoint))
    except CheckpointError:
        return []


def load_clip(config: Config, video: str | Path, num_frames: int) -> Clip:
    """Read ``video`` (a file, or a folder of frames) into one centre clip of ``num_frames`` frames,
    sampled and preprocessed as ``videoattn test`` does with ``1x1`` views."""
    from ..data.annotations import VideoRecord
    from ..data.dataset import _DEFAULT_TEMPLATES, VideoDataset
    from ..data.decoders import build_decoder
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_clip_transform
    from ..deploy.inputs import decoder_for_input

    path = Path(video)
    if not path.exists():
        raise DataError(f"video {str(video)!r} does not exist")
    data = config.data
    if data.format == "image_folder":
        raise ConfigError("visualize reads videos; the config's data.format is 'image_folder'")
    options: dict[str, Any] = dict(data.options)
    mean, std = options.get("mean", IMAGENET_MEAN), options.get("std", IMAGENET_STD)
    crop = options.get("crop") or ("multiscale" if data.sampling == "tsn" else "jitter")
    scale_size = tuple(data.scale_size) if isinstance(data.scale_size, list) else data.scale_size
    transform = build_clip_transform("val", size=data.size, scale_size=scale_size, num_crops=1, crop=crop,
                                     mean=mean, std=std)
    frames_dir = path.is_dir()
    template = options.get("frame_template") or _DEFAULT_TEMPLATES.get(data.format, "{:05d}.jpg")
    # The config's decoder, unless it reads the other kind of media than the given path is (as predict).
    name = decoder_for_input(data.decoder, frames_dir)
    decoder = build_decoder(name, frames=frames_dir, frame_template=template if frames_dir else None)
    record = VideoRecord(path=str(path), label=-1, video_id=path.stem, is_frames=frames_dir)
    dataset = VideoDataset([record], [], decoder=decoder, transform=transform, split="val", num_frames=num_frames,
                           sampling=data.sampling, frame_interval=data.frame_interval, flip="none", strict=True,
                           format_name=data.format)
    sample = dataset.load(0)
    clip = sample["video"]  # (3, T, H, W), normalised
    shown = clip * torch.tensor(std).view(3, 1, 1, 1) + torch.tensor(mean).view(3, 1, 1, 1)
    frames = shown.clamp(0, 1).permute(1, 2, 3, 0).numpy()
    return Clip(video=clip.unsqueeze(0), frames=frames, path=str(path))
