"""What ``predict``, :class:`~videoattn.deploy.Predictor` and ``visualize`` read, and how.

One collector (:func:`collect_inputs`: video files, frame folders, folders of either, list files)
and one decoder choice (:func:`decoder_for_input`: the config's decoder unless it reads the other
kind of media than the input is) for every command that scores arbitrary videos with a training
config, plus :func:`inference_config`, the config those commands read inputs with (no training
decode cache) and :func:`resolve_config` (a config file or object with ``--set`` overrides).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, apply_overrides, config_from_dict, load_config
from ..errors import ConfigError

__all__ = ["IMAGE_EXTENSIONS", "LIST_EXTENSIONS", "VIDEO_EXTENSIONS", "collect_inputs", "decoder_for_input",
           "inference_config", "is_frame_folder", "resolve_config"]

#: File name endings taken as videos when a folder is scanned.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".ogv", ".3gp", ".ts")
#: Endings of frame images: a folder holding only these (and no sub-folder) is one video.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: Endings of list files: one video path per line (relative paths: to the list's folder).
LIST_EXTENSIONS = (".txt", ".lst", ".list")
#: Decoders that read video files (the others, "frames", read frame folders; "auto" picks).
VIDEO_DECODERS = ("pyav", "torchcodec")
#: Decoders that read frame folders only ("dali" reads both kinds).
FRAME_DECODERS = ("frames", "nvjpeg")


def is_frame_folder(path: str | os.PathLike) -> bool:
    """A folder that holds only frame images (hidden entries aside) and at least one: one video."""
    path = Path(path)
    if not path.is_dir():
        return False
    entries = [entry for entry in path.iterdir() if not entry.name.startswith(".")]
    return bool(entries) and all(entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS
                                 for entry in entries)


def collect_inputs(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The videos named by ``source``: a video file, a frame folder, a folder, a list file, or a list.

    A folder that holds only images is one video (its frames); any other folder is searched
    recursively for video files (by :data:`VIDEO_EXTENSIONS`) and frame folders, in sorted order.
    A ``.txt``/``.lst``/``.list`` file lists one path per line (``#`` comments and blank lines
    ignored; relative paths are relative to the list's folder). Paths that do not exist are kept:
    scoring reports them as missing. Collecting the result again gives it back unchanged.
    """
    if isinstance(source, (list, tuple)):
        return [path for item in source for path in collect_inputs(item)]
    path = Path(source)
    if path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        entries = [line for line in lines if line and not line.startswith("#")]
        return [str(Path(entry) if Path(entry).is_absolute() else path.parent / entry) for entry in entries]
    if path.is_dir() and not is_frame_folder(path):
        found: list[str] = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            base = Path(root)
            frame_dirs = [d for d in dirs if is_frame_folder(base / d)]
            found.extend(str(base / name) for name in frame_dirs)
            dirs[:] = [d for d in dirs if d not in frame_dirs]
            found.extend(str(base / name) for name in sorted(files)
                         if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS)
        return sorted(found)
    return [str(path)]


def decoder_for_input(configured: str, frames: bool) -> str:
    """The decoder to read one input with: the config's ``data.decoder`` unless it reads the other
    kind of media (a video decoder given a frame folder, ``frames``/``nvjpeg`` given a video file):
    then ``auto``, which picks by the input."""
    if frames and configured in VIDEO_DECODERS:
        return "auto"
    if not frames and configured in FRAME_DECODERS:
        return "auto"
    return configured


def inference_config(config: Config, frames: bool) -> Config:
    """A copy of ``config`` whose data section reads one input of the given kind for inference:
    the decoder of :func:`decoder_for_input` and no training decode cache (``cache_decoded`` keeps
    whole decoded videos in memory for the next epoch; inference reads each video once)."""
    result = copy.deepcopy(config)
    result.data.decoder = decoder_for_input(result.data.decoder, frames)
    result.data.options = {key: value for key, value in (result.data.options or {}).items()
                           if key != "cache_decoded"}
    return result


def resolve_config(config: Config | str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """``config`` (a YAML path or a :class:`Config`) with the ``KEY=VALUE`` ``overrides`` applied
    and validated, as ``--set`` does; a :class:`Config` given without overrides is returned as is."""
    if not isinstance(config, Config):
        return load_config(config, list(overrides))
    if not overrides:
        return config
    try:  # on a copy: the caller's object is left as it is
        return config_from_dict(apply_overrides(config.to_dict(), list(overrides)))
    except ConfigError as error:
        raise ConfigError(f"overrides {list(overrides)!r} on the given Config: {error}") from None
