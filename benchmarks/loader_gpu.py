"""Can the loader keep a GPU fed? Training throughput from real dataset layouts against the same model fed
from memory (issue 26).

For each model (``r2d50``, ``r2d50_gta``) the engine (``videoattn.engine.train``) trains a fixed number
of optimizer steps from:

* ``memory``: one pre-made float clip served from memory by the main process (the model's own rate);
* ``webm``: SSv2-like VP9 WebM videos (the SSv2 release), 240 x 320, 48 frames;
* ``mp4``: the same videos as H.264 MP4;
* ``frames``: SSv1-like JPEG frame folders (the SSv1 release), 240 x 320, 48 frames;

all three generated here by ``videoattn data synth --size 240 --width 320 --frames 48``, with every
decoder installed for the layout (``pyav``, ``torchcodec``, ``dali``, and ``nvdec`` on a GPU for videos;
``frames``, ``dali``, ``nvjpeg`` for folders) and ``data.transforms_on`` ``cpu`` and ``device`` (``dali``
and ``nvjpeg``: ``device`` only, they decode in the training process; ``dali`` on ``--device cpu`` not for the MP4s, as
DALI's CPU backend has no H.264). A GPU decoder that cannot be used here (not installed, or a torchvision
built for another torch) is listed under ``not_run`` with the reason instead of a run. Reported per
run, over the steps after ``--warmup``: clips/s, the data-wait share of step time (from the engine's step
records), the fraction of the from-memory rate, and from the engine's run summary the loader's clips/s (per
worker and in total) and each worker's peak host memory.

    python benchmarks/loader_gpu.py                 # on a GPU machine: writes benchmarks/results/loader_gpu.json
    python benchmarks/loader_gpu.py --device cpu --tiny --out /tmp/loader_gpu.json   # seconds: the script's test

CPU numbers are never written to ``benchmarks/results/loader_gpu.json`` (the script refuses): that file
holds GPU measurements only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "benchmarks" / "results" / "loader_gpu.json"


class MemoryClips:
    """The from-memory reference: ``length`` items that are one pre-made normalised clip (no decoding)."""

    def __init__(self, length: int, classes: list[str], num_frames: int, size: int):
        import torch

        self.classes = classes
        self.length = length
        self.clip = torch.randn(3, num_frames, size, size, generator=torch.Generator().manual_seed(0))
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, key) -> dict:
        index = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        return {"video": self.clip, "label": index % len(self.classes), "index": index, "skipped": []}


def available_video_decoders() -> list[str]:
    decoders = ["pyav"]
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        pass
    else:
        decoders.append("torchcodec")
    if dali_available():
        decoders.append("dali")
    if nvdec_supported():
        decoders.append("nvdec")  # PyAV + FFmpeg's CUDA hwaccel in (spawned) workers; only on a GPU machine
    return decoders


def nvdec_supported() -> bool:
    """``data.decoder: nvdec`` is worth a run: CUDA is there and PyAV has hardware decoding (>= 14)."""
    import torch

    try:
        from av.codec.hwaccel import HWAccel  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def dali_available() -> bool:
    from videoattn.data.dali import dali_available as available

    return available()


def nvjpeg_unavailable() -> str | None:
    """None when ``data.decoder: nvjpeg`` (torchvision's decode_jpeg) can be used here, else why not."""
    from videoattn.data.nvjpeg import _unavailable_reason

    return _unavailable_reason()


def not_run() -> list[dict]:
    """The frame-folder GPU decoders that cannot be used here, with the reason (a row instead of a run)."""
    rows = []
    if not dali_available():
        rows.append({"source": "frames", "decoder": "dali", "status": "not available: nvidia.dali cannot be imported"})
    if (reason := nvjpeg_unavailable()) is not None:
        rows.append({"source": "frames", "decoder": "nvjpeg", "status": f"not available: {reason}"})
    return rows


def decoders_for(source: str, device: str) -> list[str]:
    """The decoders a layout is read with: ``frames`` (+ ``dali``, ``nvjpeg``) for JPEG folders, every installed
    video decoder for videos, except ``dali`` for H.264 MP4 on a CPU (its CPU backend decodes VP9, not H.264)."""
    if source == "frames":
        return (["frames"] + (["dali"] if dali_available() else [])
                + (["nvjpeg"] if nvjpeg_unavailable() is None else []))
    return [d for d in available_video_decoders() if not (d == "dali" and source == "mp4" and device != "cuda")]


def make_sources(work: Path, args) -> dict[str, Path]:
    """The layouts of ``--sources``, written by ``videoattn data synth`` (reused when already there)."""
    from videoattn.cli import main as cli

    sources = {}
    for fmt in args.sources:
        out = work / f"synth_{fmt}"
        if not (out / "synthetic.json").exists():
            code = cli(["data", "synth", "--out", str(out), "--num-videos", str(args.num_videos), "--frames",
                        str(args.frames), "--size", str(args.height), "--width", str(args.width), "--format", fmt,
                        "--workers", str(args.synth_workers), "--seed", "0"])
            if code != 0:
                raise SystemExit(f"videoattn data synth --format {fmt} failed with exit status {code}")
        sources[fmt] = out
    return sources


def run_config(args, work_dir: Path, model: str, source: Path | None, decoder: str, transforms_on: str) -> dict:
    data: dict = {"size": args.size, "num_workers": args.workers, "transforms_on": transforms_on,
                  "decoder": decoder, "options": {}}
    if source is not None:
        settings = json.loads((source / "synthetic.json").read_text())["load"]
        data.update(format=settings["format"], root=str(source / settings["root"]),
                    train_annotations=str(source / settings["annotations"]["train"]),
                    labels=str(source / settings["labels"]))
        if "video_extension" in settings:
            data["options"]["video_extension"] = settings["video_extension"]
    else:  # the memory reference: the dataset is replaced, these keys only have to be valid
        data.update(format="ssv2", root=str(work_dir.parent), train_annotations="memory", num_workers=0)
    model_section = {"name": model, "num_frames": args.num_frames, "num_classes": 8,
                     "channels_last": args.device == "cuda", "options": dict(args.model_options)}
    train = {"work_dir": str(work_dir), "epochs": 10_000, "max_steps": args.warmup + args.steps,
             "batch_size": args.batch, "lr": 0.01, "val_interval": 0, "log_interval": 1, "progress": False,
             "device": args.device, "precision": args.precision, "checkpoint_interval": 0}
    return {"model": model_section, "data": data, "train": train}


def measure(args, work_dir: Path, model: str, source: Path | None, decoder: str, transforms_on: str,
            num_videos: int) -> dict:
    from videoattn.config import config_from_dict
    from videoattn.engine import train

    config = config_from_dict(run_config(args, work_dir, model, source, decoder, transforms_on))
    steps: list[dict] = []

    def record(event: str, values: dict) -> None:
        if event == "step":
            steps.append(values)

    start = time.perf_counter()
    if source is None:
        classes = [f"class {i}" for i in range(8)]
        memory = MemoryClips(max(num_videos, args.batch), classes, args.num_frames, args.size)
        with mock.patch("videoattn.engine.trainer.build_dataset_for", lambda *a, **k: memory):
            result = train(config, callbacks=[record])
    else:
        result = train(config, callbacks=[record])
    wall = time.perf_counter() - start
    measured = steps[args.warmup:]
    seconds = [args.batch / max(s["clips_per_second"], 1e-9) for s in measured]
    total = max(sum(seconds), 1e-9)
    loader = result.summary["loader"]
    peaks = loader["peak_host_memory_mib_per_worker"]
    return {"model": model, "source": "memory" if source is None else source.name.removeprefix("synth_"),
            "decoder": None if source is None else decoder,
            "transforms_on": loader["transforms_on"], "steps_measured": len(measured),
            "clips_per_second": args.batch * len(measured) / total,
            "data_wait_fraction": sum(s["data_wait_fraction"] * t for s, t in zip(measured, seconds)) / total,
            "loader_clips_per_second": loader["clips_per_second"] if source is not None else None,
            "loader_clips_per_second_per_worker": loader["clips_per_second_per_worker"] if source is not None
            else None,
            "peak_host_memory_mib_per_worker": peaks if source is not None else None,
            "max_peak_host_memory_mib": max(peaks.values()) if peaks and source is not None else None,
            "wall_seconds": wall}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true",
                        help="tiny data and models (24 x 32 px, 8 frames, 8 base channels), 2+1 steps: checks the "
                             "script, measures nothing meaningful")
    parser.add_argument("--models", default="r2d50,r2d50_gta")
    parser.add_argument("--steps", type=int, help="measured optimizer steps per run (default 40; tiny 2)")
    parser.add_argument("--warmup", type=int, help="steps before measuring (default 8; tiny 1)")
    parser.add_argument("--batch", type=int, help="clips per step (default 32; tiny 2)")
    parser.add_argument("--workers", type=int, help="loader workers (default: CPU cores - 2; tiny 1)")
    parser.add_argument("--precision", help="train.precision (default bf16 on cuda, fp32 on cpu)")
    parser.add_argument("--num-videos", type=int, help="videos per layout (default 256; tiny 16)")
    parser.add_argument("--work", help="folder for the generated data and runs (default: a temporary one)")
    parser.add_argument("--sources", default="webm,mp4,frames",
                        help="layouts to train from: webm (SSv2), mp4, frames (SSv1); default all three")
    parser.add_argument("--out", help=f"JSON to write (default on cuda: {RESULTS.relative_to(REPO)})")
    args = parser.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(args.sources) - {"webm", "mp4", "frames"})
    if unknown or not args.sources:
        parser.error(f"--sources: expected some of webm, mp4, frames, got {', '.join(unknown) or 'none'}")
    tiny = args.tiny
    defaults = {"steps": 2 if tiny else 40, "warmup": 1 if tiny else 8, "batch": 2 if tiny else 32,
                "workers": 1 if tiny else max(1, (os.cpu_count() or 4) - 2), "num_videos": 16 if tiny else 256,
                "precision": "bf16" if args.device == "cuda" else "fp32"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.height, args.width, args.frames = (24, 32, 8) if tiny else (240, 320, 48)
    args.size, args.num_frames = (16, 4) if tiny else (224, 8)
    args.model_options = {"base_channels": 8} if tiny else {}
    args.synth_workers = 1 if tiny else max(1, os.cpu_count() or 1)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.out is None and args.device == "cuda":
        args.out = str(RESULTS)
    if args.out is not None and args.device == "cpu" and Path(args.out).resolve() == RESULTS.resolve():
        parser.error(f"{RESULTS.relative_to(REPO)} holds GPU measurements only; write CPU runs elsewhere (--out)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device here (use --device cpu --tiny to check the script)")
    return args


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    runs: list[dict] = []
    result = {
        "machine": {"device": args.device, "device_name": device_name, "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "settings": {"tiny": args.tiny, "models": args.models, "steps": args.steps, "warmup": args.warmup,
                     "batch": args.batch, "workers": args.workers, "precision": args.precision,
                     "num_videos": args.num_videos, "frames_per_video": args.frames,
                     "frame_size": [args.height, args.width], "clip": [args.num_frames, args.size, args.size],
                     "sources": list(args.sources),
                     "decoders": {"video": available_video_decoders(), "frames": decoders_for("frames", args.device)}},
        "runs": runs,
        "not_run": not_run(),
    }

    def save(final: bool = False) -> None:
        """Write the runs so far (after each run: a session's time limit keeps what was measured)."""
        result["complete"] = final
        if args.out:
            from videoattn.utils.io import atomic_write_json

            atomic_write_json(args.out, result)

    with tempfile.TemporaryDirectory(prefix="loader_gpu_") as scratch:
        work = Path(args.work or scratch)
        sources = make_sources(work, args)
        for model in args.models:
            reference = measure(args, work / f"run_{model}_memory", model, None, "auto", "auto", args.num_videos)
            reference["fraction_of_memory_rate"] = 1.0
            runs.append(reference)
            save()
            for name, source in sources.items():
                for decoder in decoders_for(name, args.device):
                    # dali and nvjpeg decode in the training process, where the transforms then run too
                    for transforms_on in (("device",) if decoder in ("dali", "nvjpeg") else ("cpu", "device")):
                        run = measure(args, work / f"run_{model}_{name}_{decoder}_{transforms_on}", model, source,
                                      decoder, transforms_on, args.num_videos)
                        run["fraction_of_memory_rate"] = run["clips_per_second"] / max(reference["clips_per_second"],
                                                                                     1e-9)
                        runs.append(run)
                        save()
                        print(f"{model:11s} {name:6s} {decoder:10s} {transforms_on:6s} "
                              f"{run['clips_per_second']:8.1f} clips/s ({100 * run['fraction_of_memory_rate']:.0f}% "
                              f"of memory) wait {100 * run['data_wait_fraction']:.0f}%", file=sys.stderr)
    for row in result["not_run"]:
        print(f"{row['source']:6s} {row['decoder']:10s} {row['status']}", file=sys.stderr)
    save(final=True)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
