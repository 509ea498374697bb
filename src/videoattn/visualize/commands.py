"""``videoattn visualize KIND``: the papers' figures for a model and a video.

    videoattn visualize attention --config CFG --checkpoint CKPT --video clip.mp4 --query 4,16,16 --out fig
    videoattn visualize curves --run work/a --run work/b --out fig
"""

from __future__ import annotations

import argparse
from typing import Any

_KIND_HELP = {
    "gta-matrices": "GTA's learned temporal matrices (GTA Fig. 5)",
    "gta-regions": "Region GTA's strongest regions per frame (GTA Fig. 3, 6)",
    "attention": "NL vs DNL/GTA SA+TA, RNL, SA-GSM attention for --query, GSM gates",
    "bat": "BAT's W = P^T A Q^T per group (BAT eq. 8)",
    "rsa": "RSA's predicted space-time kernel for --query",
    "cam": "Grad-CAM over the frames (any model)",
    "tsne": "t-SNE of clip features over --split (SA-GSM Fig. 9)",
    "curves": "loss/top-1/top-5 curves of --run work dirs",
}


def register(subparsers: Any) -> None:
    kinds = "; ".join(f"{k}: {v}" for k, v in _KIND_HELP.items())
    parser = subparsers.add_parser(
        "visualize", help="draw the papers' figures (attention, GTA matrices/regions, BAT, Grad-CAM, t-SNE, curves)",
        description=f"Write PNGs that show what a model computes on a video. Kinds: {kinds}. Nothing changes "
        "the model's output.")
    parser.add_argument("kind", metavar="KIND", help=", ".join(_KIND_HELP))
    parser.add_argument("--config", "-c", default=None, help="YAML config (model section and preprocessing)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
                        help="override config values")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="checkpoint file (default: the config's model.weights)")
    parser.add_argument("--video", default=None, metavar="PATH", help="video file or folder of frames")
    parser.add_argument("--query", dest="queries", action="append", default=[], metavar="T,Y,X",
                        help="query position: frame index, row, column in input pixels (repeatable; "
                        "default: the clip's centre)")
    parser.add_argument("--block", dest="select", default=None, metavar="TEXT",
                        help="only blocks whose module path contains TEXT (e.g. layer2)")
    parser.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                        help="cam: the class to explain (default: the predicted one)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="tsne: which split")
    parser.add_argument("--max-videos", type=int, default=None, metavar="N", help="tsne: at most N videos")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="DIR",
                        help="curves: a run's work dir (repeat to overlay several)")
    parser.add_argument("--out", default="visualize-output", metavar="DIR",
                        help="folder the PNGs are written to, created if missing (default ./visualize-output)")
    parser.add_argument("--no-progress", action="store_true", help="tsne: no progress bar")
    parser.set_defaults(func=run_visualize)


def run_visualize(args: argparse.Namespace) -> int:
    from .api import visualize

    paths = visualize(args.kind, args.config, args.checkpoint, args.video, queries=args.queries, out=args.out,
                      overrides=args.overrides, select=args.select, class_index=args.class_index, split=args.split,
                      max_videos=args.max_videos, runs=args.runs, progress=not args.no_progress)
    for path in paths:
        print(f"wrote {path}")
    return 0
