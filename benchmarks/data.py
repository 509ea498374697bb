"""Data pipeline throughput: decoding, loader clips/s, and the loader next to model training speed.

Measures, on videos written here (nothing downloaded):

1. Seek-based vs decode-everything PyAV sampling of TSN 8-frame clips from 10 s, 30 fps, 320x240
   videos (h264 mp4 and vp9 webm, keyframe every 1 s and every 250 frames, x264's default).
   "decode-everything" decodes and converts every frame, then picks the 8 (what a naive PyAV loader
   does); "sequential" decodes up to the last needed frame, converting only the 8; "seek" is the
   default decoder (packet index + seek to the keyframe before each needed group of frames).
2. Training-loader clips/s (TSN 8 frames, 224 px multi-scale crop, batch 8) from h264 mp4, vp9 webm
   and JPEG folders, with 1 and 2 workers.
3. Loader clips/s at the demo's settings (synthetic webm, ``DemoSettings.preset(quick=False)``), uncached and
   from the in-memory cache the demo uses, next to the
   training clips/s of the demo model (R2D-18, 16 base channels) measured here, and the engine
   benchmark's tiny-config numbers (``benchmarks/results/train.json`` or ``train_loop.json``) when
   present.

4. (``--parts backends``) Decoding backends: ms per TSN 8-frame clip from the same 320x240 media,
   PyAV mp4 / webm (with one reused swscale context, the default, and with one per frame as before
   issue 18), torchcodec where it can be imported, JPEG folders with Pillow.

Run: ``python benchmarks/data.py [--quick]``; writes ``benchmarks/results/data.json``
(``--parts backends --out benchmarks/results/data_backends.json`` for part 4 alone).
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

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def _frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """Textured moving content (so codecs do real work): a drifting noise texture and a moving disc."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, size=(height // 4, width // 4 + num_frames, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 4, 0), 4, 1)
    ys, xs = np.mgrid[0:height, 0:width]
    out = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = np.roll(texture, t, axis=1)[:, :width].copy()
        cx = (t * 3) % width
        disc = (xs - cx) ** 2 + (ys - height // 2) ** 2 < (height // 6) ** 2
        frame[disc] = (250, 200, 40)
        out[t] = frame
    return out


def _write_media(folder: Path, count: int, num_frames: int, gop: int) -> dict[str, list[str]]:
    from PIL import Image

    from videoattn.data.synthetic import encode_video

    paths: dict[str, list[str]] = {"mp4": [], "webm": [], "frames": []}
    for i in range(count):
        frames = _frames(num_frames, 240, 320, i)
        for fmt in ("mp4", "webm"):
            path = folder / f"v{i}_gop{gop}.{fmt}"
            if not path.exists():
                encode_video(frames, path, fmt, fps=30, quality=28, gop_size=gop, preset="veryfast")
            paths[fmt].append(str(path))
        if gop == 30:
            jpg = folder / f"v{i}_frames"
            if not jpg.exists():
                tmp = folder / f".v{i}_frames"
                tmp.mkdir(exist_ok=True)
                for t, image in enumerate(frames):
                    Image.fromarray(image).save(tmp / f"img_{t + 1:05d}.jpg", quality=90)
                os.replace(tmp, jpg)
            paths["frames"].append(str(jpg))
    return paths


def _decode_everything(path: str, indices: np.ndarray) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = 1  # the same decoder threading as the seek-based decoder it is compared with
        all_frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return np.stack([all_frames[i] for i in indices])


def bench_seek(paths: dict[str, list[str]], repeats: int) -> dict:
    from videoattn.data.decoders import PyAVDecoder
    from videoattn.data.sampling import tsn_indices

    results = {}
    seek, sequential = PyAVDecoder(num_threads=1, seek=True), PyAVDecoder(num_threads=1, seek=False)
    methods = {
        "decode_everything": _decode_everything,
        "sequential": sequential.get_frames,
        "seek": seek.get_frames,
    }
    for fmt in ("mp4", "webm"):
        videos = paths[fmt]
        for p in videos:  # warm caches (file system, packet index) for every method alike
            for fn in methods.values():
                fn(p, tsn_indices(300, 8))
        # Methods are interleaved clip by clip and summarised by the median time per clip, so load
        # from other processes on a shared machine biases no method in particular.
        times: dict[str, list[float]] = {name: [] for name in methods}
        rng = np.random.default_rng(0)
        for _ in range(repeats):
            for p in videos:
                indices = tsn_indices(300, 8, rng)
                for name, fn in methods.items():
                    start = time.perf_counter()
                    fn(p, indices)
                    times[name].append(time.perf_counter() - start)
        rate = {name: 1.0 / float(np.median(values)) for name, values in times.items()}
        results[fmt] = {f"{k}_clips_per_s": round(v, 2) for k, v in rate.items()}
        results[fmt]["seek_speedup_vs_decode_everything"] = round(rate["seek"] / rate["decode_everything"], 2)
        results[fmt]["seek_speedup_vs_sequential"] = round(rate["seek"] / rate["sequential"], 2)
        results[fmt]["clips_timed_per_method"] = len(times["seek"])
    return results


class _PerFrameContext:
    """The PyAV decoder as it was before issue 18: ``to_ndarray(format="rgb24")`` per frame, which builds
    a new swscale context for every frame (the default decoder reuses one per process)."""

    def __init__(self):
        from videoattn.data.decoders import PyAVDecoder

        self.decoder = PyAVDecoder(num_threads=1)
        self.decoder._rgb = lambda frame: frame.to_ndarray(format="rgb24")

    def get_frames(self, path, indices):
        return self.decoder.get_frames(path, indices)


def bench_backends(paths: dict[str, list[str]], repeats: int) -> dict:
    """Seconds per TSN 8-frame clip (median) from 320x240 media, by backend and container, decoding only
    (no transforms): PyAV with one reused swscale context (default) and with one per frame (before),
    torchcodec where it imports, JPEG folders with Pillow. Interleaved clip by clip."""
    from videoattn.data.decoders import FrameFolderDecoder, PyAVDecoder, TorchCodecDecoder, torchcodec_available
    from videoattn.data.sampling import tsn_indices

    methods: dict[str, tuple[str, object]] = {
        "pyav_mp4": ("mp4", PyAVDecoder(num_threads=1)),
        "pyav_mp4_context_per_frame": ("mp4", _PerFrameContext()),
        "pyav_webm": ("webm", PyAVDecoder(num_threads=1)),
        "pyav_webm_context_per_frame": ("webm", _PerFrameContext()),
        "pillow_jpeg_frames": ("frames", FrameFolderDecoder("img_{:05d}.jpg")),
    }
    if torchcodec_available():
        methods["torchcodec_mp4"] = ("mp4", TorchCodecDecoder(num_threads=1))
        methods["torchcodec_webm"] = ("webm", TorchCodecDecoder(num_threads=1))
    times: dict[str, list[float]] = {name: [] for name in methods}
    rng = np.random.default_rng(0)
    for warm in (True, False):
        for _ in range(1 if warm else repeats):
            for i in range(len(paths["mp4"])):
                indices = tsn_indices(300, 8, rng)
                for name, (fmt, decoder) in methods.items():
                    start = time.perf_counter()
                    decoder.get_frames(paths[fmt][i], indices)
                    if not warm:
                        times[name].append(time.perf_counter() - start)
    out = {name: {"ms_per_clip": round(1e3 * float(np.median(values)), 2),
                  "clips_per_s": round(1.0 / float(np.median(values)), 1)} for name, values in times.items()}
    out["torchcodec"] = ("measured" if torchcodec_available() else
                         "not measured: torchcodec 0.17 installs with pip but needs the system FFmpeg shared "
                         "libraries (libavcodec ...), which this machine lacks")
    return out


def bench_loader(paths: dict[str, list[str]], folder: Path, batches: int, workers_list=(1, 2)) -> dict:
    import torch

    from videoattn.data import build_dataset, build_loader

    torch.set_num_threads(1)
    results = {}
    for fmt in ("mp4", "webm", "frames"):
        listing = folder / f"list_{fmt}.txt"
        if fmt == "frames":
            listing.write_text("".join(f"{os.path.basename(p)} 300 {i % 2}\n" for i, p in enumerate(paths[fmt])))
        else:
            listing.write_text("".join(f"{os.path.basename(p)} {i % 2}\n" for i, p in enumerate(paths[fmt])))
        for workers in workers_list:
            ds = build_dataset("frame_list" if fmt == "frames" else "video_list", root=folder, annotations=listing,
                               size=224, num_frames=8)
            loader = build_loader(ds, 8, num_workers=workers, persistent_workers=True, drop_last=False)
            iterator = iter(loader)
            next(iterator)  # start the workers
            clips, start, epoch = 0, time.perf_counter(), 0
            while clips < batches * 8:
                for batch in iterator:
                    clips += batch["video"].shape[0]
                epoch += 1
                ds.set_epoch(epoch)
                iterator = iter(loader)
            results[f"{fmt}_workers{workers}_clips_per_s"] = round(clips / (time.perf_counter() - start), 2)
            del iterator, loader
    return results


def bench_demo(folder: Path, quick: bool) -> dict:
    """Loader clips/s at ``videoattn demo``'s default settings: decoding every epoch with 1 or 2
    workers, and from the in-memory cache of decoded videos the demo uses (after the first epoch)."""
    import dataclasses

    import torch

    from videoattn.data import build_dataset, build_loader, generate_synthetic
    from videoattn.demo import DemoSettings

    torch.set_num_threads(1)
    demo = DemoSettings.preset(quick=False)
    start = time.perf_counter()
    synth = generate_synthetic(folder / "synth", num_videos=400, frames=demo.video_frames, size=demo.video_size,
                               seed=0)
    generation_s = time.perf_counter() - start
    out = {"settings": dataclasses.asdict(demo), "synth_generate_400_videos_s": round(generation_s, 2)}
    kwargs = dict(format="ssv2", root=synth / "videos", annotations=synth / "train.json",
                  labels=synth / "labels.json", size=demo.size, scale_size=round(demo.size * 8 / 7),
                  num_frames=demo.num_frames, flip="none")

    def rate(loader) -> float:
        clips, start = 0, time.perf_counter()
        for batch in loader:
            clips += batch["video"].shape[0]
        return round(clips / (time.perf_counter() - start), 2)

    for workers in (1, 2):
        out[f"loader_workers{workers}_clips_per_s"] = rate(build_loader(build_dataset(**kwargs), demo.batch_size,
                                                                         num_workers=workers))
    cached = build_dataset(**kwargs, cache_decoded=True)
    out["loader_cached_first_epoch_clips_per_s"] = rate(build_loader(cached, demo.batch_size, num_workers=0))
    cached.set_epoch(1)
    out["loader_cached_clips_per_s"] = rate(build_loader(cached, demo.batch_size, num_workers=0))
    out["model_train"] = _model_train_speed(quick, demo)
    return out


def _model_train_speed(quick: bool, demo) -> dict:
    """Training clips/s of the demo's models measured here, plus the engine benchmark's numbers if present."""
    out: dict = {}
    for name in ("train.json", "train_loop.json"):
        path = RESULTS / name
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                engine = json.load(handle)
            out["engine_benchmark"] = {"source": str(path.relative_to(ROOT.parent)),
                                       "tiny_config": engine.get("tiny_config", engine)}
            break
    import torch

    from videoattn import create_model

    torch.set_num_threads(2)
    size, batch = demo.size, demo.batch_size
    clips = torch.randn(batch, 3, demo.num_frames, size, size)
    labels = torch.randint(0, 8, (batch,))
    out["measured"] = {}
    for name, options in (("r2d18", {}), ("r2d18_gta", {"block_options": {"num_groups": 4}})):
        model = create_model(name, num_classes=8, num_frames=demo.num_frames, base_channels=demo.base_channels,
                             **options)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps = 5 if quick else 30
        for step in range(steps + 3):
            if step == 3:
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(clips), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        out["measured"][name] = {
            "setting": f"base_channels={demo.base_channels}, {demo.num_frames} frames, {size}x{size}, batch {batch}, "
                       "SGD step, 2 threads",
            "train_clips_per_s": round(steps * batch / (time.perf_counter() - start), 2)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer videos and repeats (about a minute)")
    parser.add_argument("--out", default=str(RESULTS / "data.json"))
    parser.add_argument("--parts", default="seek,loader,demo",
                        help="comma-separated parts to run (seek, loader, demo, backends); others are kept from --out")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT.parent / "src"))
    from videoattn.utils.io import atomic_write_json

    count = 2 if args.quick else 4
    parts = set(args.parts.split(","))
    result = {}
    if parts != {"seek", "loader", "demo"} and Path(args.out).is_file():
        with open(args.out, encoding="utf-8") as handle:
            result = json.load(handle)
    with tempfile.TemporaryDirectory(prefix="videoattn-bench-data-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        media = {gop: _write_media(folder, count, 300, gop) for gop in (30, 250)} \
            if parts & {"seek", "loader", "backends"} else {}
        setup_s = time.perf_counter() - t0
        result.update({
            "benchmark": "benchmarks/data.py", "quick": args.quick,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count()},
        })
        if media:
            result["videos"] = {"count": count, "frames": 300, "fps": 30, "size": "320x240",
                                "setup_s": round(setup_s, 1)}
        if "seek" in parts:
            result["seek_vs_decode_everything_tsn8"] = {
                f"gop{gop}": bench_seek(media[gop], 1 if args.quick else 5) for gop in (30, 250)}
        if "backends" in parts:
            result["decode_backends_tsn8_320x240"] = bench_backends(media[30], 2 if args.quick else 5)
        if "loader" in parts:
            result["train_loader_tsn8_224px_batch8"] = bench_loader(media[30], folder, 4 if args.quick else 12)
        if "demo" in parts:
            result["demo_settings"] = bench_demo(folder, args.quick)
    import av
    import torch

    result["versions"] = {"torch": torch.__version__, "av": av.__version__}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
