"""Class names and probabilities for any video, scored exactly as ``videoattn test`` scores a split.

:class:`Predictor` loads the model ``test`` loads (:func:`videoattn.engine.evaluation.load_model_for`),
turns the given paths into dataset entries and scores them with the evaluation code itself
(:func:`~videoattn.engine.builders.build_dataset_for` with the config's data settings and the test
views, then :func:`~videoattn.engine.evaluation.predict_scores`). So frame sampling, resizing,
crops, normalisation, view averaging and the mirrored-view class remapping are those of ``test``, and
a video of the test split gets the very scores ``test`` gives it.

Long videos (more than ``long_video`` frames) are also scored window by window: every
``stride`` frames a window of ``window`` frames is one entry restricted to that frame range
(the same views inside the window), and the result lists each window's top classes. The video's own
score is always the whole-video score ``test`` would give.

Unreadable inputs (missing, empty, not a video, too few frames, decoder failure) are never fatal in
:meth:`Predictor.predict_many`: they are returned as ``{"path", "reason"}`` and the others scored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, parse_views
from ..data.decoders import decode_errors_as_data_error
from ..errors import ConfigError, DataError
from .inputs import VIDEO_EXTENSIONS, collect_inputs, inference_config, resolve_config

__all__ = ["Predictor", "VIDEO_EXTENSIONS", "collect_inputs"]

@dataclass
class _Entry:
    path: str
    start: int = 0
    end: int | None = None


class Predictor:
    """Score videos with a trained model: ``Predictor(config, checkpoint).predict(path)``.

    ``config``: a :class:`~videoattn.config.Config` or a YAML path (its ``data`` section gives the
    preprocessing, as for ``videoattn test``; the annotation files need not exist). ``checkpoint``:
    a ``videoattn train`` checkpoint (None: the config's ``model.weights``). ``views``: ``CLIPSxCROPS``
    (default ``eval.views``). ``overrides``: ``KEY=VALUE`` strings as ``--set`` takes them (applied
    to a :class:`Config` too). ``classes``: the class names (default: those saved in the checkpoint,
    else the config's dataset's, as ``videoattn test`` reads them:
    :func:`~videoattn.engine.evaluation.class_names_for`). Inputs are read with the config's data
    settings, except that the decoder follows the input (:func:`~videoattn.deploy.inputs.decoder_for_input`)
    and the training decode cache (``cache_decoded``) is never used.
    """

    def __init__(self, config: Config | str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                 views: str | None = None, topk: int = 5, window: int = 64, stride: int | None = None,
                 long_video: int = 300, device: str = "cpu", overrides: Sequence[str] = (),
                 classes: Sequence[str] | None = None):
        from ..engine.distributed import DistContext, pick_device
        from ..engine.evaluation import class_names_for, load_model_for

        self.config = resolve_config(config, overrides)
        self.views = views or self.config.eval.views
        parse_views(self.views)
        if topk < 1:
            raise ConfigError(f"topk must be at least 1, got {topk}")
        if window < 1 or (stride is not None and stride < 1) or long_video < 0:
            raise ConfigError(f"window ({window}) and stride ({stride}) must be positive and long_video "
                              f"({long_video}) at least 0")
        self.topk, self.window, self.stride, self.long_video = topk, window, stride or max(1, window // 2), long_video
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.ctx = DistContext(device=pick_device(device))
        self.model, self.model_config, state = load_model_for(self.config, self.checkpoint)
        self.model.to(self.ctx.device)
        num_classes = int(getattr(self.model, "num_classes", 0) or self.model_config.num_classes or 0)
        if classes is not None:
            if num_classes and len(classes) != num_classes:
                raise ConfigError(f"classes: {len(classes)} names given for a model of {num_classes} classes")
            self.classes = [str(name) for name in classes]
        else:
            self.classes = class_names_for(self.config, state, num_classes, self.checkpoint)
        # one data configuration per kind of input (frame folders / video files), made on first use
        self._configs: dict[bool, Config] = {}

    # ------------------------------------------------------------------ scoring
    def _dataset(self, entries: list[_Entry], frames: bool) -> Any:
        from ..data.annotations import VideoRecord
        from ..engine.builders import build_dataset_for

        records = [VideoRecord(path=entry.path, label=-1, video_id=Path(entry.path).stem, is_frames=frames,
                               start_frame=entry.start, end_frame=entry.end) for entry in entries]
        # build_dataset_for picks the evaluation mode from the views ("val": 1x1, else "test").
        if frames not in self._configs:
            self._configs[frames] = inference_config(self.config, frames)
        return build_dataset_for(self._configs[frames], "val", num_frames=self.model_config.num_frames,
                                 views=self.views, records=records, classes=self.classes)

    def _precision(self) -> str:
        """The precision every call scores with (``auto`` resolved once: on a CPU it counts the model's MACs)."""
        from ..engine.evaluation import scoring_precision

        if getattr(self, "_resolved_precision", None) is None:
            self._resolved_precision = scoring_precision(self.config, self.model_config, self.ctx.device)
        return self._resolved_precision

    def _scores(self, entries: list[_Entry], frames: bool) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
        """``({entry index: probabilities (K,)}, {entry index: reason it could not be scored})``."""
        from ..engine.evaluation import predict_scores

        dataset = self._dataset(entries, frames)
        workers = self.config.eval.num_workers if self.config.eval.num_workers is not None else 0
        try:
            indices, scores, _, skipped = predict_scores(
                self.model, dataset, self.ctx, views=self.views, clips_per_batch=self.config.eval.batch_size,
                num_workers=workers, precision=self._precision(),
                average=self.config.eval.average,
                pin_memory=False)
        except DataError as error:
            if len(entries) == 1:
                return {}, {0: _strip_path(str(error), entries[0].path)}
            raise
        if self.config.eval.average == "logits":
            scores = scores.softmax(dim=-1)
        reasons = {int(item["index"]): _strip_path(item["reason"], item["path"]) for item in skipped}
        return {int(i): s for i, s in zip(indices.tolist(), scores)}, reasons

    def _num_frames(self, path: str, frames: bool) -> int:
        dataset = self._dataset([_Entry(path)], frames)
        return int(dataset.decoder.num_frames(path))

    def _top(self, probabilities: torch.Tensor) -> list[dict[str, Any]]:
        values, labels = probabilities.topk(min(self.topk, probabilities.numel()))
        return [{"label": int(label), "class": self.classes[int(label)], "probability": float(value)}
                for value, label in zip(values, labels)]

    def predict(self, path: str | os.PathLike) -> dict[str, Any]:
        """One video: ``{"path", "top": [{"label", "class", "probability"}], "probabilities": [K],
        "num_frames", "windows": [...]}``; raises :class:`DataError` if it cannot be read."""
        found = collect_inputs(str(path))
        if len(found) != 1:
            raise DataError(f"{path}: names {len(found)} videos, not one (a folder or list of videos); use "
                            f"predict_many or `videoattn predict` for several")
        results, skipped = self.predict_many(found)
        if skipped:
            raise DataError(f"{skipped[0]['path']}: {skipped[0]['reason']}")
        return results[0]

    def predict_many(self, paths: Iterable[str | os.PathLike], progress: bool = False,
                     on_result: Callable[[dict[str, Any]], None] | None = None,
                     ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Score every video the paths name; never stops on a bad one.

        Each path goes through :func:`collect_inputs`, as on the command line: a video file, a frame
        folder, a folder of videos and frame folders, or a list file. Returns ``(results, skipped)``:
        one result per readable video (as :meth:`predict`), and ``{"path", "reason"}`` for each one
        that could not be read (and each folder in which no video was found).
        """
        results: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        expanded: list[str] = []
        for given in [str(p) for p in paths]:
            found = collect_inputs(given)
            if not found:
                skipped.append({"path": given, "reason": "no video file or frame folder found in this folder"})
            expanded.extend(found)
        paths = expanded
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="video", desc="predict", dynamic_ncols=True)
        try:
            for path in paths:
                try:
                    result = self._predict_one(path)
                except DataError as error:
                    skipped.append({"path": path, "reason": _strip_path(str(error), path)})
                else:
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(skipped=len(skipped))
        finally:
            if bar is not None:
                bar.close()
        return results, skipped

    def _predict_one(self, path: str) -> dict[str, Any]:
        frames = os.path.isdir(path)
        if not os.path.exists(path):
            raise DataError(f"{path}: {'frame folder' if frames else 'file'} is missing")
        with decode_errors_as_data_error(path):
            total = self._num_frames(path, frames)
        entries = [_Entry(path)]
        if self.long_video and total > self.long_video:
            starts = list(range(0, max(total - self.window, 0) + 1, self.stride))
            if starts[-1] + self.window < total:
                starts.append(total - self.window)  # the last window ends with the video
            entries += [_Entry(path, start, min(start + self.window, total)) for start in starts]
        scores, reasons = self._scores(entries, frames)
        if 0 not in scores:
            raise DataError(f"{path}: {reasons.get(0, 'could not be scored')}")
        probabilities = scores[0]
        result: dict[str, Any] = {"path": path, "num_frames": total, "top": self._top(probabilities),
                                  "probabilities": [float(p) for p in probabilities], "windows": []}
        for index, entry in enumerate(entries[1:], start=1):
            window = {"start_frame": entry.start, "end_frame": entry.end}
            if index in scores:
                window.update(top=self._top(scores[index]), probabilities=[float(p) for p in scores[index]])
            else:
                window["error"] = reasons.get(index, "could not be scored")
            result["windows"].append(window)
        return result


def _strip_path(reason: str, path: str) -> str:
    """``"<path>: reason"`` -> ``"reason"`` (the path is reported beside it)."""
    prefix = f"{path}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def plot_timeline(result: dict[str, Any], path: str | os.PathLike, classes: Sequence[str],
                  num_classes: int = 5) -> Path:
    """PNG of the probability of the video's top classes over its windows (x: window centre frame)."""
    from ..analysis.plots import pyplot, save_figure

    windows = [w for w in result["windows"] if "probabilities" in w]
    if not windows:
        raise DataError(f"{result['path']}: no window was scored, nothing to plot")
    plt = pyplot()
    top = [item["label"] for item in result["top"][:num_classes]]
    centres = [(w["start_frame"] + w["end_frame"]) / 2 for w in windows]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for label in top:
        ax.plot(centres, [w["probabilities"][label] for w in windows], marker="o", markersize=3,
                label=classes[label])
    ax.set_xlabel("frame (window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(Path(result["path"]).name)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
