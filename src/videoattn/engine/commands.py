"""``videoattn train`` and ``videoattn test``.

    videoattn train --config configs/tiny.yaml [--set train.lr=0.02 data.root=/x] [--resume [auto]]
    videoattn test  --config CFG --checkpoint A.pt [--checkpoint B.pt] [--views 10x3] [--json]
    videoattn test  --config CFG --set model.weights=W.pth model.weights_layout=LAYOUT   (released weights)

Both run under ``torchrun`` unchanged (``torchrun --nproc_per_node 2 -m videoattn train ...``).
``train`` exits with 75 (:data:`~videoattn.engine.preemption.PREEMPTED_EXIT_CODE`) when SIGTERM or
SIGUSR1 stopped it at a step boundary with a checkpoint (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend",
                        default=[], help="override config values, e.g. --set train.lr=0.02 data.root=/x "
                        "(values are parsed as YAML)")


def register(subparsers: Any) -> None:
    train_parser = subparsers.add_parser(
        "train", help="train a model from a config (resumable, DDP under torchrun)",
        description="Train the model of a config. Writes config.yaml, metadata.json, metrics.jsonl, "
        "TensorBoard events, last.pt, best.pt and summary.json into train.work_dir.")
    _add_config_arguments(train_parser)
    train_parser.add_argument("--resume", nargs="?", const="auto", default=None, choices=["auto"],
                              help="continue from <work_dir>/last.pt if there is one, else start fresh "
                              "(--resume and --resume auto are the same; overrides train.resume)")
    train_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_parser.set_defaults(func=run_train)

    test_parser = subparsers.add_parser(
        "test", help="evaluate checkpoints: 1-clip or multi-view, ensembles, confusion matrix",
        description="Evaluate one checkpoint or an ensemble (scores averaged) on the val or test split.")
    _add_config_arguments(test_parser)
    test_parser.add_argument("--checkpoint", dest="checkpoints", action="append", default=[],
                             metavar="CKPT", help="checkpoint file; repeat to ensemble several (default: the "
                             "config's model.weights, e.g. weights in an authors' released layout)")
    test_parser.add_argument("--views", default=None, metavar="CLIPSxCROPS",
                             help="views per video, e.g. 1x1 (default: eval.views), 10x3, 2x3")
    test_parser.add_argument("--split", default="val", choices=("val", "test"),
                             help="which annotations to use: data.val_annotations or data.test_annotations")
    test_parser.add_argument("--out", default=None, metavar="DIR",
                             help="where to write metrics.json, confusion_matrix.csv, predictions.csv "
                             "(default: <checkpoint dir>/test_<split>_<views>)")
    test_parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    test_parser.set_defaults(func=run_test)


def run_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .preemption import Preempted
    from .trainer import train

    overrides = list(args.overrides)
    if args.no_progress:
        overrides.append("train.progress=false")
    config = load_config(args.config, overrides)
    try:
        result = train(config, resume=args.resume)
    except Preempted as stop:  # SIGTERM/SIGUSR1: last.pt holds a step boundary; a job script requeues
        print(f"videoattn train: {stop}", file=sys.stderr)
        return stop.exit_code
    if result.summary.get("world_size", 1) == 1 or _is_main():
        summary = result.summary
        best = (f", best val top-1 {summary['best_val_top1']:.2f}% (epoch {summary['best_epoch']})"
                if summary.get("best_val_top1") is not None else "")
        print(f"trained {summary['epochs_done']} epoch(s), {summary['global_step']} steps, "
              f"{summary['clips_per_second']:.1f} clips/s, data wait {100 * summary['data_wait_fraction']:.1f}%"
              f"{best}; {summary['num_skipped']} skipped sample(s). Work dir: {result.work_dir}")
        for item in summary["skipped_samples"][:10]:
            print(f"  skipped {item['path']}: {item['reason']} (x{item['count']})")
    return 0


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def run_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import load_config, parse_views
    from .evaluation import evaluate

    config = load_config(args.config, args.overrides)
    views = args.views or config.eval.views
    parse_views(views)
    first = args.checkpoints[0] if args.checkpoints else config.model.weights
    if not first:
        from ..errors import CheckpointError

        raise CheckpointError("videoattn test needs --checkpoint CKPT, or model.weights set in the config "
                              "(with model.weights_layout for an authors' released checkpoint)")
    out = args.out or str(Path(first).resolve().parent / f"test_{args.split}_{views}")
    metrics = evaluate(config, args.checkpoints, views=views, split=args.split, output_dir=out)
    if not _is_main():
        return 0
    if args.json:
        json.dump(metrics, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    kind = "ensemble of " + str(len(args.checkpoints)) if len(args.checkpoints) > 1 else (
        "checkpoint" if args.checkpoints else f"weights ({config.model.weights_layout} layout)")
    print(f"{kind}, {metrics['num_videos']} videos, {views} views ({args.split}): "
          f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  "
          f"mean class {metrics['mean_class_accuracy']:.2f}%  loss {metrics['loss']:.4f}")
    if len(metrics["members"]) > 1:
        for member in metrics["members"]:
            print(f"  {member['checkpoint']} ({member['num_frames']} frames): top-1 {member['top1']:.2f}%")
    skipped = metrics["skipped"]
    left_out = (f"; {len(skipped)} could not be read and are left out of the metrics" if skipped else "")
    print(f"{metrics['videos_evaluated']} of {metrics['videos_total']} videos evaluated{left_out}")
    for item in skipped[:20]:
        print(f"  not evaluated: {item['path']}: {item['reason']}")
    if len(skipped) > 20:
        print(f"  ... and {len(skipped) - 20} more (all listed in metrics.json)" if metrics["files"]
              else f"  ... and {len(skipped) - 20} more")
    if metrics["files"]:
        print(f"wrote {', '.join(metrics['files'].values())}")
    return 0
