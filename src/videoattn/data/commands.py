"""``videoattn data convert|check|synth``: dataset preparation from the command line."""

from __future__ import annotations

import argparse
import json
import sys

FORMAT_NAMES = ("ssv1", "ssv2", "k400", "mini200", "diving48", "frame_list", "video_list")


def _add_dataset_arguments(parser: argparse.ArgumentParser, formats=FORMAT_NAMES) -> None:
    parser.add_argument("--format", required=True, choices=formats, help="annotation format")
    parser.add_argument("--root", help="media root (videos or frame folders)")
    parser.add_argument("--annotations", required=True, help="annotation file of that format")
    parser.add_argument("--labels", help="class list file (SSv1 labels CSV, SSv2 labels.json, Diving48 vocab, "
                        "one name per line otherwise)")
    parser.add_argument("--frame-template", help="frame file name template, e.g. '{:05d}.jpg' (SSv1) or "
                        "'img_{:05d}.jpg' (frame lists)")
    parser.add_argument("--subset", help="Mini-Kinetics-200: file of YouTube ids to keep")
    parser.add_argument("--video-extension", help="video file extension when not the format's default "
                        "(.webm for SSv2, .mp4 otherwise)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare datasets: convert annotations, check media, "
                                   "write the synthetic dataset",
                                   description="Dataset preparation. See docs/data.md.")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    convert = commands.add_parser("convert", help="write the unified list + class file of a released dataset")
    _add_dataset_arguments(convert, ("ssv1", "ssv2", "k400", "mini200", "diving48"))
    convert.add_argument("--out", required=True, help="unified list to write (video_list or frame_list format)")
    convert.add_argument("--out-classes", help="class names file to write (default: <out>.classes.txt)")
    convert.add_argument("--report", help="write missing/bad entries as JSON here")
    convert.add_argument("--duplicates", default="refuse", choices=("refuse", "first", "drop"),
                         help="a video annotated more than once: stop and name the entries (refuse, default), "
                         "keep its first entry (first) or leave all its entries out (drop)")
    convert.add_argument("--check", action="store_true",
                         help="leave out the entries `data check` flags (unreadable or too short media); "
                         "without it they are written and reported")
    convert.add_argument("--workers", type=int, default=2, help="parallel readers for the media check (default 2)")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    convert.set_defaults(func=run_convert)

    check = commands.add_parser("check", help="scan a dataset for unusable entries; exit 1 if any")
    _add_dataset_arguments(check)
    check.add_argument("--report", help="write every bad entry as {path, reason} to this JSON file")
    check.add_argument("--min-frames", type=int, default=1, help="fewer usable frames is an error (default 1)")
    check.add_argument("--decoder", default="auto", choices=("auto", "pyav", "torchcodec", "frames", "dali", "nvjpeg"))
    check.add_argument("--thorough", action="store_true", help="decode every frame, not just three")
    check.add_argument("--workers", type=int, default=2, help="parallel readers (default 2)")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.set_defaults(func=run_check)

    synth = commands.add_parser("synth", help="write the synthetic temporal-reasoning dataset (SSv2 layout)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num-videos", type=int, default=400, help="videos in total (default 400)")
    synth.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    synth.add_argument("--size", type=int, default=64, help="frame height and width, even (default 64)")
    synth.add_argument("--width", type=int, help="frame width, even, when it differs from --size (the height): "
                       "--size 240 --width 320 --frames 48 is SSv2's resolution and typical length")
    synth.add_argument("--seed", type=int, default=0,
                       help="random seed: the same seed and sizes give the same videos (default 0)")
    synth.add_argument("--format", default="webm", choices=("webm", "mp4", "frames"),
                       help="webm (VP9, as SSv2) or mp4 (H.264) videos, or frames: JPEG frame folders as SSv1 "
                       "(default webm)")
    synth.add_argument("--num-pairs", type=int, default=4, help="time-reversed class pairs, 1..5 (default 4)")
    synth.add_argument("--workers", type=int, default=1, help="processes rendering/encoding (default 1)")
    synth.set_defaults(func=run_synth)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_convert(args) -> int:
    from pathlib import Path

    from ..utils.io import atomic_write_json
    from .convert import convert_annotations

    out_classes = args.out_classes or str(Path(args.out).with_suffix("")) + ".classes.txt"
    summary = convert_annotations(args.format, args.annotations, args.out, out_classes, root=args.root,
                                  labels=args.labels, frame_template=args.frame_template, subset=args.subset,
                                  video_extension=args.video_extension, duplicates=args.duplicates,
                                  check="drop" if args.check else "report", num_workers=args.workers,
                                  progress=not args.no_progress and sys.stderr.isatty())
    print(f"wrote {summary['written']} of {summary['num_entries']} entries to {args.out} "
          f"({summary['list_format']}) and {summary['num_classes']} classes to {out_classes}")
    headings = {"missing": "with missing media (left out)", "bad": "unusable (left out)",
                "check_failed": "flagged by the media check of `data check` "
                                + ("(left out: --check)" if args.check else "(written; --check leaves them out)")}
    for kind, heading in headings.items():
        items = summary[kind]
        if items:
            print(f"{len(items)} entries {heading}, e.g.:")
            for item in items[:5]:
                print(f"  {item['path']}: {item['reason']}")
    if summary["duplicates"]:
        what = "kept the first entry" if args.duplicates == "first" else "left out every entry"
        print(f"{len(summary['duplicates'])} videos annotated more than once ({what}: --duplicates {args.duplicates}):")
        for group in summary["duplicates"][:5]:
            print(f"  {group['reason']}")
    load = f"--format {summary['list_format']} --root {args.root} --annotations {args.out} --labels {out_classes}"
    if summary["frame_template"]:
        load += f" --frame-template '{summary['frame_template']}'"
    print(f"load it with: {load}")
    if args.report:
        atomic_write_json(args.report, summary)
    return 0


def run_check(args) -> int:
    from .check import check_dataset

    report = check_dataset(args.format, args.annotations, root=args.root, labels=args.labels,
                           decoder=args.decoder, frame_template=args.frame_template, subset=args.subset,
                           video_extension=args.video_extension, min_frames=args.min_frames,
                           thorough=args.thorough, num_workers=args.workers, progress=not args.no_progress,
                           report=args.report)
    print(report.summary())
    for item in report.bad[:20]:
        print(f"  {item['path']}: {item['reason']}")
    if report.num_bad > 20:
        print(f"  ... and {report.num_bad - 20} more" + (f" (all in {args.report})" if args.report else ""))
    return 1 if report.num_bad else 0


def run_synth(args) -> int:
    import time

    from .synthetic import generate_synthetic

    start = time.perf_counter()
    out = generate_synthetic(args.out, num_videos=args.num_videos, frames=args.frames, size=args.size,
                             seed=args.seed, format=args.format, num_pairs=args.num_pairs, workers=args.workers,
                             progress=sys.stderr.isatty(), width=args.width)
    with open(out / "synthetic.json", encoding="utf-8") as handle:
        load = json.load(handle)["load"]
    shape = f"{args.size}px" if args.width is None else f"{args.size}x{args.width} px"
    print(f"wrote {args.num_videos} videos ({args.format}, {args.frames} frames, {shape}) to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    print(f"load with format={load['format']!r}, root={str(out / load['root'])!r}, "
          f"annotations={str(out / load['annotations']['train'])!r}, labels={str(out / load['labels'])!r}")
    return 0
