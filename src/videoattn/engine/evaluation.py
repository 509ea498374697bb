"""Evaluation: 1-clip and multi-view testing, sharded over processes, and checkpoint ensembles.

Each video of the test split is seen as ``CLIPSxCROPS`` views (e.g. ``10x3``: ten clips spread over
the video, three spatial crops each, as in the RNL/BAT/GTA Kinetics protocols; ``1x1``: one centre
clip and centre crop, GTA's SSv1/SSv2 protocol). The video's score is the mean of its views' softmax
probabilities (``eval.average: prob``) or logits (``logits``). An ensemble of checkpoints (e.g. GTA's
8-frame + 16-frame ensemble, sec. 4.3) averages the members' video scores the same way; each member
is built from the model section saved in its checkpoint, so members may differ in ``num_frames``.

With several processes every process scores a disjoint shard (no padding, so no video is counted
twice) and the scores are gathered before any metric is computed.

A video that cannot be read (or any of whose views cannot) is never replaced by another one: it is
left out of the metrics and listed with its reason (``skipped``); the metrics say how many of the
split's videos were evaluated (``videos_evaluated`` of ``videos_total``). An ensemble is scored
over the videos every member could read.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ..config import Config, ModelConfig, parse_views, section_from_dict
from ..data.sampler import ResumableSampler
from ..errors import CheckpointError, ConfigError, DataError
from ..utils.io import atomic_write_json, atomic_write_text
from .builders import (
    auto_precision_work,
    build_dataset_for,
    build_loader_for,
    build_model,
    check_model_name,
    split_source,
)
from .checkpoint import load_checkpoint, load_model_weights
from .distributed import DistContext, all_gather_objects, init_distributed
from .guard import worker_death as _worker_death
from .metrics import confusion_matrix, summarize_scores
from .precision import autocast_context, evaluation_precision, resolve_precision
from .preflight import check_media_present

__all__ = ["class_names_for", "evaluate", "load_model_for", "predict_scores"]


@torch.no_grad()
def predict_scores(model: torch.nn.Module, dataset: Any, ctx: DistContext, views: str = "1x1",
                   clips_per_batch: int = 8, num_workers: int = 0, precision: str = "fp32",
                   average: str = "prob", pin_memory: bool | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
    """Score every video of ``dataset``: ``(indices (N,), scores (N, K) float32, labels (N,), skipped)``.

    Scores are averaged over the video's views (probabilities or logits); results of all processes
    are gathered and sorted by dataset index, so every process returns the same tensors. Videos the
    dataset could not read are not scored; ``skipped`` lists them as ``{"index", "path", "reason"}``
    (sorted by index). Raises :class:`DataError` if no video at all could be scored.
    """
    num_clips, num_crops = parse_views(views)
    num_views = num_clips * num_crops
    videos_per_batch = max(1, clips_per_batch // num_views)
    sampler = ResumableSampler(len(dataset), shuffle=False, num_replicas=ctx.world_size, rank=ctx.rank,
                               drop_last=False)
    if hasattr(dataset, "defer_decoding"):  # data.decoder: dali/nvjpeg decode in this process
        dataset.defer_decoding(ctx.device)

    def score_local(workers: int) -> tuple[list, list, list, list]:
        loader = build_loader_for(dataset, videos_per_batch, sampler, workers, pin_memory, seed=0,
                                  drop_last=False)
        indices, scores, labels, skipped = [], [], [], []
        for batch in loader:
            if "payload" in batch:  # data.decoder: dali/nvjpeg (an undecodable video joins "dropped")
                batch = dataset.decode_batch(batch, ctx.device)
            skipped.extend(_flatten_skipped(batch.get("dropped")))
            if "video" not in batch and "image" not in batch:  # every sample of this batch was dropped
                continue
            video = (batch["video"] if "video" in batch else batch["image"]).to(ctx.device, non_blocking=True)
            if num_views > 1 or video.ndim == 6:
                if video.ndim != 6:
                    raise ValueError(f"expected (N, V, C, T, H, W) test views, got {tuple(video.shape)}")
                batch_size, views_here = video.shape[:2]
                flat = video.flatten(0, 1)
            else:
                batch_size, views_here, flat = video.shape[0], 1, video
            with autocast_context(precision, ctx.device, "eval.precision"):
                logits = torch.cat([model(chunk) for chunk in flat.split(max(clips_per_batch, 1))])
            logits = logits.float().view(batch_size, views_here, -1)
            if getattr(dataset, "view_class_maps", None) is not None:  # mirrored views (swap_left_right)
                from ..data.dataset import remap_view_scores

                logits = remap_view_scores(logits, dataset.view_class_maps)
            per_view = logits.softmax(dim=-1) if average == "prob" else logits
            scores.append(per_view.mean(dim=1).cpu())
            labels.append(torch.as_tensor(batch["label"]).long().cpu())
            indices.append(torch.as_tensor(batch["index"]).long().cpu())
        return indices, scores, labels, skipped

    was_training = model.training
    model.eval()
    try:
        try:
            indices, scores, labels, skipped = score_local(num_workers)
        except RuntimeError as error:
            # a loader worker killed (e.g. by the OOM killer): score this process's share again in
            # the process itself (same clips, same model: the same scores), before any collective
            if not num_workers or not _worker_death(error):
                raise
            first = str(error).strip().splitlines()[0]
            print(f"videoattn: evaluation: {first}; scoring again without loader workers", file=sys.stderr,
                  flush=True)
            indices, scores, labels, skipped = score_local(0)
    finally:
        model.train(was_training)
    local = (torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long),
             torch.cat(scores) if scores else torch.zeros(0, 0),
             torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long), skipped)
    merged = _merge_shards(all_gather_objects(local, ctx))
    if merged[0].numel() == 0:
        first = merged[3][0] if merged[3] else {"path": "?", "reason": "?"}
        raise DataError(f"none of the {len(dataset)} videos could be evaluated (first: {first['path']}: "
                        f"{first['reason']}); run `videoattn data check`")
    return merged


def _merge_shards(gathered: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict]]:
    """Every process's ``(indices, scores, labels, skipped)`` as one result sorted by dataset index."""
    parts = [part for part in gathered if part[0].numel()]
    skipped = sorted((item for part in gathered for item in part[3]), key=lambda item: item.get("index", -1))
    if not parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), skipped
    all_indices = torch.cat([p[0] for p in parts])
    order = all_indices.argsort()
    return (all_indices[order], torch.cat([p[1] for p in parts])[order],
            torch.cat([p[2] for p in parts])[order], skipped)


def _flatten_skipped(skipped: Any) -> list[dict]:
    """``batch["skipped"]``/``batch["dropped"]``: a flat list of records or one list per sample."""
    out: list[dict] = []
    if not skipped:
        return out
    for item in skipped:
        if isinstance(item, dict):
            record = {"path": str(item.get("path")), "reason": str(item.get("reason"))}
            if "index" in item:
                record = {"index": int(item["index"]), **record}
            out.append(record)
        elif isinstance(item, (list, tuple)):
            out.extend(_flatten_skipped(item))
    return out


def _labelled_metrics(scores: torch.Tensor, labels: torch.Tensor, average: str) -> dict[str, Any]:
    """Metrics over the videos that have a label (test splits may have none: label -1)."""
    labelled = labels >= 0
    return {**summarize_scores(scores[labelled], labels[labelled]),
            "loss": score_loss(scores[labelled], labels[labelled], average)}


def score_loss(scores: torch.Tensor, labels: torch.Tensor, average: str) -> float:
    """Cross-entropy of video-level scores (NLL of averaged probabilities; CE of averaged logits)."""
    if labels.numel() == 0:
        return 0.0
    if average == "prob":
        return float(F.nll_loss(scores.clamp_min(1e-12).log(), labels))
    return float(F.cross_entropy(scores, labels))


def _member_model_config(config: Config, state: dict[str, Any], path: str) -> ModelConfig:
    saved = state.get("config")
    if isinstance(saved, dict) and isinstance(saved.get("model"), dict):
        model_config = section_from_dict(ModelConfig, saved["model"], "model")
    else:
        model_config = ModelConfig(**config.model.__dict__)
    model_config.pretrained = None  # the checkpoint holds every weight
    if "num_classes" in state and isinstance(state["num_classes"], int):
        model_config.num_classes = state["num_classes"]
    if model_config.num_classes is None:
        raise CheckpointError(f"checkpoint {path!r} does not record its number of classes; set "
                              f"model.num_classes")
    return model_config


def _model_config_for(config: Config, checkpoint: str | None) -> tuple[ModelConfig, dict[str, Any] | None]:
    """The model section of a checkpoint (None: the config's model with its ``model.weights``)."""
    if checkpoint is None:
        state = None
        model_config = ModelConfig(**{**config.model.__dict__, "pretrained": None})
    else:
        state = load_checkpoint(checkpoint)
        model_config = _member_model_config(config, state, checkpoint)
    check_model_name(model_config.name)
    return model_config, state


def scoring_precision(config: Config, model_config: ModelConfig, device: Any) -> str:
    """The concrete precision ``test``/``predict`` score ``model_config``'s model with on ``device``
    (:func:`~videoattn.engine.precision.evaluation_precision`, ``auto`` decided as training decides it:
    on a CPU from the model's GMACs per clip at ``data.size``, so test and predict agree)."""
    value = evaluation_precision(config)  # an inherited train.precision is refused as eval.precision's value
    return resolve_precision(value, device, "eval.precision",
                             auto_precision_work(model_config, value, config.data.size, device))


def _build_member(model_config: ModelConfig, state: dict[str, Any] | None, path: str,
                  num_dataset_classes: int, compile: bool | None = None) -> torch.nn.Module:
    if state is None:
        num_classes = model_config.num_classes or num_dataset_classes
        if not num_classes:
            raise ConfigError("config key 'model.num_classes' is not set and the dataset has no classes")
        return build_model(model_config, num_classes, pretrained=True, compile=compile)  # loads model.weights
    model = build_model(model_config, model_config.num_classes, pretrained=False, compile=compile)
    load_model_weights(model, state, source=f"checkpoint {path!r}")
    return model


def load_model_for(config: Config, checkpoint: str | None, num_dataset_classes: int = 0,
                   compile: bool | None = None) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any] | None]:
    """The model ``evaluate`` scores for ``checkpoint`` (None: the config's ``model.weights``).

    Returns ``(model in eval mode on the CPU, its model section, the checkpoint dict or None)``;
    ``predict``, ``export`` and ``visualize`` use it so that they run exactly the network ``test``
    evaluates. ``compile=False`` leaves ``model.compile`` off (``visualize`` hooks into the modules).
    """
    if checkpoint is None and not config.model.weights:
        raise CheckpointError("a checkpoint (--checkpoint) or whole-model weights in the config "
                              "(model.weights, read in model.weights_layout) is needed")
    model_config, state = _model_config_for(config, checkpoint)
    model = _build_member(model_config, state, str(checkpoint or config.model.weights), num_dataset_classes,
                          compile=compile)
    return model.eval(), model_config, state


def _config_classes(config: Config) -> tuple[list[str] | None, list[str]]:
    """The class list of the config's dataset as ``videoattn test`` reads it (the split as
    ``build_dataset_for`` gives it to the data module), trying the val, test and train splits in
    turn; ``(classes or None, why each split gave none)``."""
    from ..data import read_split

    data = config.data
    options = data.options or {}
    failures: list[str] = []
    for split in ("val", "test", "train"):
        annotations, labels, subset = split_source(config, split)
        if not annotations:
            continue
        key = f"data.{split}_annotations"
        try:
            _, classes = read_split(data.format, annotations, root=data.root or None, labels=labels, subset=subset,
                                    frame_template=options.get("frame_template"),
                                    video_extension=options.get("video_extension"))
        except Exception as error:  # noqa: BLE001 - every failure is reported in the one-line error
            text = " ".join(str(error).split())
            failures.append(f"{key} ({annotations!r}): {text[:160]}")
            continue
        if classes:
            return [str(name) for name in classes], failures
        failures.append(f"{key} ({annotations!r}): no classes")
    return None, failures


def class_names_for(config: Config, state: dict[str, Any] | None = None, num_classes: int | None = None,
                    checkpoint: str | None = None) -> list[str]:
    """The model's class names: the one source ``test``, ``predict``, ``export`` and ``visualize`` use.

    The checkpoint's ``classes`` (``state``, what ``best.pt``/``last.pt`` save) when it has them,
    else the classes of the config's dataset read exactly as ``videoattn test`` reads them (labels
    file / annotations of the val, test or train split), else a :class:`CheckpointError` saying
    neither is available. ``num_classes`` (the model's) is checked against the names' count. The
    flip policy (``swap_left_right`` pairs) of ``predict`` is derived from these names, so they must
    be the names the model was trained with, never numbers.
    """
    source = f"checkpoint {checkpoint!r}" if checkpoint else "the checkpoint"
    saved = (state or {}).get("classes")
    if saved:
        names = [str(name) for name in saved]
        if num_classes and len(names) != num_classes:
            raise CheckpointError(f"{source} lists {len(names)} class names for a model of {num_classes} "
                                  f"classes")
        return names
    names, failures = _config_classes(config)
    what = (f"{source} stores no class names ('classes')" if state is not None
            else f"whole-model weights (model.weights {config.model.weights!r}) store no class names")
    if names is None:
        why = "; ".join(failures) if failures else "data.val_annotations, test_annotations and " \
            "train_annotations are not set"
        raise CheckpointError(f"no class names: {what}, and the config's dataset gives none ({why}); set "
                              f"data.labels (and an annotation file) to the class list the model was trained on")
    if num_classes and len(names) != num_classes:
        raise CheckpointError(f"no class names: {what}, and the config's dataset lists {len(names)} classes "
                              f"for a model of {num_classes}; set data.labels to the class list the model "
                              f"was trained on")
    return names


def evaluate(config: Config, checkpoints: list[str] | str, views: str | None = None, split: str = "val",
             output_dir: str | Path | None = None, ctx: DistContext | None = None) -> dict[str, Any]:
    """Test one checkpoint or an ensemble; return metrics (and write files when ``output_dir`` is set).

    Returns ``{"top1", "top5", "mean_class_accuracy", "loss", "num_videos", "videos_evaluated",
    "videos_total", "views", "split", "checkpoints", "members": [per-checkpoint metrics], "seconds",
    "skipped", "files": {...}}``. ``num_videos`` counts the labelled videos the metrics are over;
    ``videos_evaluated`` of ``videos_total`` videos were scored, the others could not be read (by
    some ensemble member) and are listed in ``skipped`` as ``{"index", "path", "reason"}``.
    Files written by the main process into ``output_dir``: ``metrics.json``, ``confusion_matrix.csv``
    (row = true class, column = predicted), ``predictions.csv`` (one line per evaluated video: index,
    label, top-5 predicted classes and their scores).
    """
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [str(checkpoints)]
    checkpoints = list(checkpoints or [])
    if not checkpoints:
        if not config.model.weights:
            raise CheckpointError("evaluate needs a checkpoint (--checkpoint) or whole-model weights in the "
                                  "config (model.weights, read in model.weights_layout)")
        checkpoints = [str(config.model.weights)]
        released = True  # the config's model, built with model.weights (any registered layout)
    else:
        released = False
    views = views or config.eval.views
    parse_views(views)
    own_ctx = ctx is None
    ctx = ctx or init_distributed(config.train.device)
    start = time.perf_counter()
    try:
        results, classes, video_ids, videos_total = [], [], [], 0
        skipped: dict[int, dict] = {}
        for path in checkpoints:
            model_config, state = _model_config_for(config, None if released else path)
            dataset = build_dataset_for(config, split, num_frames=model_config.num_frames, views=views,
                                        evaluation=True)
            if not results:  # every member reads the same annotations
                annotations = getattr(config.data, f"{split}_annotations")
                check_media_present(dataset, config.data.root, f"data.{split}_annotations ({annotations!r})",
                                    tolerance=config.data.missing_tolerance, warn=ctx.is_main)
            videos_total = len(dataset)
            classes = list(getattr(dataset, "classes", []) or [])
            records = getattr(dataset, "records", None) or []
            video_ids = [str(getattr(r, "video_id", "") or Path(str(getattr(r, "path", ""))).stem)
                         for r in records]
            model = _build_member(model_config, state, path, len(classes))
            model.to(ctx.device)
            workers = config.eval.num_workers if config.eval.num_workers is not None else config.data.num_workers
            indices, scores, labels, member_skipped = predict_scores(
                model, dataset, ctx, views=views, clips_per_batch=config.eval.batch_size,
                num_workers=workers, precision=scoring_precision(config, model_config, ctx.device),
                average=config.eval.average,
                pin_memory=config.data.pin_memory)
            for item in member_skipped:
                skipped.setdefault(item["index"], item)
            results.append((str(path), model_config.num_frames, indices, scores, labels))
            del model
        # Score every member on the same videos: those that every member could read.
        common = results[0][2]
        for _, _, indices, _, _ in results[1:]:
            common = common[torch.isin(common, indices)]
        if common.numel() == 0:
            raise DataError(f"no video of the {split} split could be read by every ensemble member")
        members, ensemble_scores, labels_ref = [], None, None
        for path, num_frames, indices, scores, labels in results:
            keep = torch.isin(indices, common)
            scores, labels_ref = scores[keep], labels[keep]
            members.append({"checkpoint": path, "num_frames": num_frames,
                            **_labelled_metrics(scores, labels_ref, config.eval.average)})
            ensemble_scores = scores if ensemble_scores is None else ensemble_scores + scores
        assert ensemble_scores is not None and labels_ref is not None
        ensemble_scores = ensemble_scores / len(checkpoints)
        metrics: dict[str, Any] = {
            **_labelled_metrics(ensemble_scores, labels_ref, config.eval.average),
            "num_unlabelled": int((labels_ref < 0).sum()),
            "videos_evaluated": int(common.numel()), "videos_total": videos_total,
            "views": views, "split": split, "checkpoints": [str(p) for p in checkpoints],
            "members": members, "seconds": time.perf_counter() - start,
            "skipped": [skipped[index] for index in sorted(skipped)], "files": {},
        }
        if output_dir is not None and ctx.is_main:
            metrics["files"] = _write_outputs(Path(output_dir), metrics, ensemble_scores, labels_ref,
                                              common, classes, video_ids)
        return metrics
    finally:
        if own_ctx:
            ctx.close()


def _unique_skipped(skipped: list[dict]) -> list[dict]:
    seen: dict[tuple[str, str], int] = {}
    for item in skipped:
        key = (item["path"], item["reason"])
        seen[key] = seen.get(key, 0) + 1
    return [{"path": p, "reason": r, "count": c} for (p, r), c in seen.items()]


def _write_outputs(output_dir: Path, metrics: dict[str, Any], scores: torch.Tensor, labels: torch.Tensor,
                   indices: torch.Tensor, classes: list[str], video_ids: list[str]) -> dict[str, str]:
    output_dir.mkdir(parents=True, exist_ok=True)
    num_classes = scores.shape[1]
    names = classes if len(classes) == num_classes else [str(i) for i in range(num_classes)]
    labelled = labels >= 0
    matrix = confusion_matrix(scores[labelled].argmax(dim=1), labels[labelled], num_classes)
    header = "true\\predicted," + ",".join(_csv(n) for n in names)
    rows = [f"{_csv(names[i])}," + ",".join(str(int(v)) for v in matrix[i]) for i in range(num_classes)]
    atomic_write_text(output_dir / "confusion_matrix.csv", "\n".join([header, *rows]) + "\n")
    k = min(5, num_classes)
    top_scores, top_classes = scores.topk(k, dim=1)
    lines = ["index,video_id,label,label_name,predicted,predicted_name,correct,top5,top5_scores"]
    for row in range(scores.shape[0]):
        index, label, predicted = int(indices[row]), int(labels[row]), int(top_classes[row, 0])
        video_id = video_ids[index] if index < len(video_ids) else ""
        lines.append(",".join([
            str(index), _csv(video_id), str(label), _csv(names[label]) if label >= 0 else "",
            str(predicted), _csv(names[predicted]), str(int(label == predicted)) if label >= 0 else "",
            " ".join(str(int(c)) for c in top_classes[row]),
            " ".join(f"{float(s):.5f}" for s in top_scores[row])]))
    atomic_write_text(output_dir / "predictions.csv", "\n".join(lines) + "\n")
    files = {"metrics": str(output_dir / "metrics.json"),
             "confusion_matrix": str(output_dir / "confusion_matrix.csv"),
             "predictions": str(output_dir / "predictions.csv")}
    atomic_write_json(output_dir / "metrics.json", {**metrics, "files": files})
    return files


def _csv(text: str) -> str:
    text = str(text)
    if any(ch in text for ch in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
