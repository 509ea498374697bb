"""``videoattn.visualize.visualize``: one entry point for every kind of figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..config import Config
from ..errors import ConfigError, DataError, unknown_name

__all__ = ["KINDS", "parse_query", "visualize"]

#: Every kind, with what it draws.
KINDS = {
    "gta-matrices": "GTA's learned T x T pixel/region matrices per block (GTA Fig. 5)",
    "gta-regions": "Region GTA's strongest regions per frame as coloured masks (GTA Fig. 3, 6)",
    "attention": "attention of NL / DNL / TAPE / GTA's SA / RNL / SA-GSM for query positions, and GSM's gates",
    "bat": "BAT's re-projected attention W = P^T A Q^T per group and frame (BAT eq. 8, Fig. 4)",
    "rsa": "RSA's predicted space-time kernel for query positions (the dynamic kernel that replaces the conv's)",
    "cam": "Grad-CAM over the frames, any model",
    "tsne": "t-SNE of clip features over a dataset split, coloured by class (SA-GSM Fig. 9)",
    "curves": "loss / top-1 / top-5 training and validation curves of one or several runs",
}
_CLIP_KINDS = ("gta-regions", "attention", "bat", "rsa", "cam")


def parse_query(text: str | Sequence[int], clip_shape: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """``"T,Y,X"`` (frame index, row and column in input pixels) -> ``(t, y, x)``, checked against the
    clip's ``(T, H, W)`` when given."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
    else:
        values = tuple(int(v) for v in text)
    if len(values) != 3:
        raise ConfigError(f"--query {text!r}: expected T,Y,X (frame index, row and column in input pixels), "
                          f"e.g. --query 4,16,16")
    if clip_shape is not None:
        for value, size, axis in zip(values, clip_shape, ("T (frame)", "Y (row)", "X (column)")):
            if not 0 <= value < size:
                raise ConfigError(f"--query {text!r}: {axis} must be in 0..{size - 1} for a clip of "
                                  f"{clip_shape[0]} frames of {clip_shape[1]}x{clip_shape[2]} pixels, got {value}")
    return values  # type: ignore[return-value]


def visualize(kind: str, config: Config | str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
              video: str | os.PathLike | None = None, *, model: nn.Module | None = None,
              queries: Sequence[str | Sequence[int]] | None = None, out: str | os.PathLike = "visualize-output",
              overrides: Sequence[str] = (), select: str | None = None, class_index: int | None = None,
              split: str = "val", max_videos: int | None = None, runs: Sequence[str | os.PathLike] = (),
              progress: bool = True) -> list[Path]:
    """Write the PNG(s) of ``kind`` into ``out`` and return their paths.

    ``config`` (a :class:`Config` or YAML path) gives the model section and the preprocessing;
    ``checkpoint`` the weights (default: the config's ``model.weights``), or pass a built ``model``.
    ``video`` (file or frame folder) is read as ``videoattn test`` reads it (one centre clip). ``queries``
    are ``"T,Y,X"`` positions in the clip (frame, row, column in input pixels; default the centre,
    plus two more reference points for RNL). ``select`` keeps only blocks whose path contains it.
    ``curves`` reads ``runs`` (work dirs) and needs nothing else; ``tsne`` reads ``split`` of the
    config's dataset (at most ``max_videos``) instead of ``video``.
    """
    if kind not in KINDS:
        raise unknown_name("visualize kind", kind, list(KINDS))
    out_dir = Path(out)
    if kind == "curves":
        from .curves import curves_figure

        out_dir.mkdir(parents=True, exist_ok=True)
        return curves_figure(list(runs), out_dir)
    if config is None:
        raise ConfigError(f"visualize {kind} needs a config (--config CFG): it gives the model and the preprocessing")
    if queries:
        for query in queries:
            parse_query(query)  # the form, before anything is loaded
    if kind in _CLIP_KINDS:
        if video is None:
            raise ConfigError(f"visualize {kind} needs a video (--video PATH: a file or a folder of frames)")
        if not Path(video).exists():
            raise DataError(f"video {str(video)!r} does not exist")
    from .loading import load_model, resolve_config

    config = resolve_config(config, overrides)
    if model is None:
        model, model_config = load_model(config, checkpoint)
        num_frames = model_config.num_frames
        return _draw(kind, model, config, video, num_frames, out_dir, queries, select, class_index, split,
                     max_videos, progress, checkpoint)
    # A model the caller built: drawn in eval mode, then every module is given back its own mode (a
    # training model stays in training, with any batch norms its owner froze still frozen), also on error.
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        num_frames = getattr(model, "num_frames", None) or config.model.num_frames
        return _draw(kind, model, config, video, num_frames, out_dir, queries, select, class_index, split,
                     max_videos, progress, checkpoint)
    finally:
        for module, training in modes:
            module.training = training


def _draw(kind: str, model: nn.Module, config: Config, video, num_frames: int, out_dir: Path,
          queries: Sequence[str | Sequence[int]] | None, select: str | None, class_index: int | None, split: str,
          max_videos: int | None, progress: bool, checkpoint=None) -> list[Path]:
    from .loading import class_names, load_clip

    out_dir.mkdir(parents=True, exist_ok=True)
    if kind == "gta-matrices":
        from .kinds import gta_matrices_figure

        return gta_matrices_figure(model, out_dir, select)
    if kind == "tsne":
        from .tsne import tsne_figure

        return tsne_figure(model, config, out_dir, split, max_videos, num_frames, seed=config.train.seed,
                           progress=progress)
    from . import kinds
    from .capture import ATTENTION_TYPES, find_modules

    # Fail on a model without the needed block before decoding the video.
    if kind == "attention":
        kinds._require(model, ATTENTION_TYPES, kind, "attention block (nl, dnl, tape, gta, rnl, sa_gsm, gsm)", select)
    elif kind == "gta-regions":
        kinds._require(model, (kinds.GlobalTemporalAttention,), kind, "GTA block", select)
    elif kind == "bat":
        kinds._require(model, (kinds.BATBase,), kind, "BAT block", select)
    elif kind == "rsa":
        from ..blocks.rsa import RelationalSelfAttention

        kinds._require(model, (RelationalSelfAttention,), kind, "RSA layer", select)
    clip = load_clip(config, video, num_frames)
    clip.classes = class_names(config, checkpoint)
    shape = tuple(clip.frames.shape[:3])
    if queries:
        parsed = [parse_query(q, shape) for q in queries]  # type: ignore[arg-type]
    else:
        t, h, w = shape
        parsed = [(t // 2, h // 2, w // 2)]
        if find_modules(model, (kinds.RegionNonLocalBlock,), select):
            parsed += [(t // 2, h // 4, w // 4), (t // 2, 3 * h // 4, 3 * w // 4)]
    if kind == "attention":
        return kinds.attention_figure(model, clip, out_dir, parsed, select)
    if kind == "gta-regions":
        return kinds.gta_regions_figure(model, clip, out_dir, select)
    if kind == "bat":
        return kinds.bat_figure(model, clip, out_dir, select)
    if kind == "rsa":
        from .rsa import rsa_figure

        return rsa_figure(model, clip, out_dir, parsed, select)
    from .cam import cam_figure

    return cam_figure(model, clip, out_dir, class_index)
