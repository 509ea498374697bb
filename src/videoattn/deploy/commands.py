"""``videoattn predict`` and ``videoattn export``.

    videoattn predict VIDEO_OR_DIR_OR_LIST --config CFG --checkpoint CKPT [--topk 5] [--views 1x1]
                      [--json] [--out FILE.csv|FILE.json] [--window 64 --stride 32 --long 300]
    videoattn export  --config CFG --checkpoint CKPT --format onnx|torchscript|exported-program
                      --out FILE [--frames T --size S --scale-size N|HxW --batch dynamic|1]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="the YAML config the model was trained with "
                        "(its data section gives the preprocessing)")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="checkpoint file (default: the config's model.weights)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                        help="override config values, as for train/test")


def register(subparsers: Any) -> None:
    predict = subparsers.add_parser(
        "predict", help="class names and probabilities for videos (same preprocessing and views as test)",
        description="Score a video, a frame folder, a folder of videos or a list file (.txt: one path per "
        "line) with a trained model. Videos longer than --long frames are also scored window by window "
        "(top classes per window; a timeline PNG beside --out). Unreadable files are reported and skipped.")
    predict.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video file(s), folder(s) or list file(s)")
    _add_model_arguments(predict)
    predict.add_argument("--topk", type=int, default=5, help="classes listed per video (default 5)")
    predict.add_argument("--views", default=None, metavar="CLIPSxCROPS", help="views per video (default: eval.views)")
    predict.add_argument("--json", action="store_true", help="print JSON (and write JSON to --out)")
    predict.add_argument("--out", default=None, metavar="FILE",
                         help="write the results: .csv (one row per video) or .json (with windows)")
    predict.add_argument("--window", type=int, default=64, metavar="FRAMES", help="window length (default 64)")
    predict.add_argument("--stride", type=int, default=None, metavar="FRAMES",
                         help="window step (default: half a window)")
    predict.add_argument("--long", dest="long_video", type=int, default=300, metavar="FRAMES",
                         help="videos with more frames are also scored window by window (default 300; 0: never)")
    predict.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(func=run_predict)

    export = subparsers.add_parser(
        "export", help="export a trained model to ONNX, TorchScript or an ExportedProgram (parity-checked)",
        description="Export the model test evaluates, for inputs (N, 3, T, S, S). The file records the class "
        "names, frame count, input size and normalisation; it is checked against PyTorch before it is kept.")
    _add_model_arguments(export)
    export.add_argument("--format", required=True, choices=("onnx", "torchscript", "exported-program"))
    export.add_argument("--out", required=True, metavar="FILE", help="output file")
    export.add_argument("--frames", type=int, default=None, metavar="T", help="frames (default: model.num_frames)")
    export.add_argument("--size", type=int, default=None, metavar="S", help="crop size (default: data.size)")
    export.add_argument("--scale-size", default=None, metavar="N|HxW",
                        help="resize recorded for serving: shorter side N or HxW (default: data.scale_size, "
                        "scaled by --size / data.size)")
    export.add_argument("--batch", default="dynamic", metavar="dynamic|1",
                        help="'dynamic' (any batch, default) or 1 (a fixed batch of one)")
    export.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest max-abs logit difference from PyTorch accepted (default 1e-4)")
    export.set_defaults(func=run_export)


def _write_results(path: Path, results: list[dict], skipped: list[dict], as_json: bool, meta: dict) -> None:
    from ..utils.io import atomic_write_json, atomic_write_text

    if as_json or path.suffix.lower() == ".json":
        atomic_write_json(path, {**meta, "results": results, "skipped": skipped})
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "status", "top1", "top1_probability", "topk", "topk_probabilities", "windows",
                     "reason"])
    for result in results:
        top = result["top"]
        writer.writerow([result["path"], "ok", top[0]["class"], f"{top[0]['probability']:.6f}",
                         "|".join(item["class"] for item in top),
                         " ".join(f"{item['probability']:.6f}" for item in top), len(result["windows"]), ""])
    for item in skipped:
        writer.writerow([item["path"], "skipped", "", "", "", "", "", item["reason"]])
    atomic_write_text(path, buffer.getvalue())


def timeline_names(paths: list[str]) -> dict[str, str]:
    """``{video path: timeline PNG name}``, unique per input: the video's path relative to the folder
    all inputs share, plus ``.timeline.png`` (``a/1.webm`` and ``b/1.webm`` -> ``a/1.webm.timeline.png``
    and ``b/1.webm.timeline.png``; a single video -> ``1.webm.timeline.png``)."""
    import os

    if not paths:
        return {}
    absolute = {path: os.path.abspath(path) for path in paths}
    common = os.path.commonpath([os.path.dirname(p) for p in absolute.values()])
    return {path: os.path.relpath(full, common) + ".timeline.png" for path, full in absolute.items()}


def run_predict(args: argparse.Namespace) -> int:
    from .predict import Predictor, collect_inputs, plot_timeline

    predictor = Predictor(args.config, args.checkpoint, views=args.views, topk=args.topk, window=args.window,
                          stride=args.stride, long_video=args.long_video, device=args.device,
                          overrides=args.overrides)
    paths = collect_inputs(args.inputs)
    if not paths:
        from ..errors import DataError

        raise DataError(f"no video found in {', '.join(args.inputs)}")
    results, skipped = predictor.predict_many(paths, progress=not args.no_progress and len(paths) > 1)
    out = Path(args.out) if args.out else None
    timeline_dir = out.parent if out else Path.cwd()
    names = timeline_names([result["path"] for result in results])
    for result in results:
        result.pop("probabilities", None)  # K numbers per video: the top-k is what is reported
        if any("top" in window for window in result["windows"]):
            timeline = timeline_dir / names[result["path"]]
            result["timeline"] = str(plot_timeline(result, timeline, predictor.classes))
        for window in result["windows"]:
            window.pop("probabilities", None)
    meta = {"checkpoint": args.checkpoint, "views": predictor.views, "classes": predictor.classes}
    if out:
        _write_results(out, results, skipped, args.json, meta)
    if args.json:
        json.dump({**meta, "results": results, "skipped": skipped}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for result in results:
            top = ", ".join(f"{item['class']} {100 * item['probability']:.1f}%" for item in result["top"])
            extra = (f" ({len(result['windows'])} windows, timeline {result['timeline']})"
                     if "timeline" in result else "")
            print(f"{result['path']}: {top}{extra}")
        if out:
            print(f"wrote {out}")
    if skipped:
        count = f"{len(skipped)} file{'s' if len(skipped) > 1 else ''}"
        print(f"{count} could not be read and {'were' if len(skipped) > 1 else 'was'} skipped:", file=sys.stderr)
        for item in skipped[:20]:
            print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
        if len(skipped) > 20:
            print(f"  ... and {len(skipped) - 20} more" + (f" (all listed in {out})" if out else ""), file=sys.stderr)
    # a batch with some bad files still succeeds; nothing predicted at all is a failure scripts must see
    return 0 if results else 1


def _parse_scale_size(text: str | None) -> int | list[int] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConfigError(f"--scale-size must be a positive whole number N or HxW (e.g. 256 or 240x320), got {text!r}")
    return values[0] if len(values) == 1 else values


def run_export(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import ConfigError
    from .export import export_model

    if args.batch not in ("dynamic", "1"):
        raise ConfigError(f"--batch must be 'dynamic' or 1, got {args.batch!r}")
    scale_size = _parse_scale_size(args.scale_size)
    config = load_config(args.config, args.overrides)
    info = export_model(config, args.checkpoint, args.format, args.out, frames=args.frames, size=args.size,
                        dynamic_batch=args.batch == "dynamic", tolerance=args.tolerance, scale_size=scale_size)
    meta = info["metadata"]
    print(f"wrote {info['path']} ({args.format}, input {tuple(meta['input_shape'])}, resize "
          f"{meta['scale_size']}, {meta['num_classes']} classes); max abs logit difference from PyTorch "
          f"{info['max_abs_diff']:.2e}")
    return 0
