"""Synthetic temporal-reasoning dataset in Something-Something-v2 layout (the embedded default data).

Why it separates order-aware from order-blind models (details in ``docs/data.md``):

* Classes come in pairs (A, B) that are the same event played forwards and backwards: "moving
  something from left to right" / "... from right to left", "moving something down" / "up",
  "... towards the camera" / "... away from the camera", "something appearing" / "disappearing",
  and optionally "turning something clockwise" / "counterclockwise".
* A video of B is *made* by rendering a fresh forward video of A's event with freshly drawn random
  appearance and timing, then reversing its frame order. So the distribution of B's videos is
  exactly the distribution of A's videos reversed in time: the *set* of frames (and of any
  segment-symmetric frame sample such as TSN's) has the same distribution in A and B. A model that
  averages per-frame features over time, or any attention whose output is invariant to permuting
  frames, sees identically distributed inputs for A and B and cannot beat 50% within a pair.
* Everything else (background colour and texture, object shape, colour and size, path position
  and length, speed, start and end time of the motion, sensor noise, static distractors) is drawn
  independently of the class, so nothing but the direction of time tells A from B.
* The event spans most of the video (it starts in the first 20% and ends in the last 20%) and
  moves the object across 45-75% of the frame (or scales it 2.5-4x, or fades it fully), so 8
  TSN-sampled frames of a 32-frame, 64 px video show it clearly: an order-aware model learns it in a
  few epochs.

Generation is deterministic: video ``i`` uses ``numpy.random.default_rng([seed, i])``; the encoders
are configured deterministically (single-threaded), so the same seed writes the same frames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils.faults import fault_point
from ..utils.io import atomic_write, atomic_write_json, atomic_write_text
from ..utils.parallel import map_with_progress

__all__ = ["GENERATOR_VERSION", "PAIRS", "synthetic_classes", "render_video", "generate_synthetic", "SYNTH_FORMATS",
           "encode_video"]

SYNTH_FORMATS = ("webm", "mp4", "frames")

#: Bumped whenever the rendered content changes for a given seed; caches of generated data should key on it.
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class Pair:
    kind: str
    forward: str  # SSv2-style template of the event as rendered
    backward: str  # its time reversal


PAIRS = (
    Pair("horizontal", "Moving [something] from left to right", "Moving [something] from right to left"),
    Pair("vertical", "Moving [something] down", "Moving [something] up"),
    Pair("scale", "Moving [something] towards the camera", "Moving [something] away from the camera"),
    Pair("fade", "[Something] appearing", "[Something] disappearing"),
    Pair("rotate", "Turning [something] clockwise", "Turning [something] counterclockwise"),
)

_SHAPES = ("circle", "square", "diamond", "cross", "ring")
# Object colours: saturated and bright in at least one channel, drawn over dark backgrounds, so the
# object is always the bright thing in the frame (a consistent contrast polarity is what lets small
# models learn motion direction in a few hundred steps; the colour itself is still random).
_COLOUR_NAMES = {
    "red": (235, 50, 45), "green": (60, 220, 70), "blue": (70, 120, 255), "yellow": (245, 230, 60),
    "magenta": (230, 70, 220), "cyan": (60, 225, 235), "orange": (250, 150, 40), "white": (245, 245, 245),
    "pink": (250, 150, 190), "lime": (180, 250, 60),
}


def synthetic_classes(num_pairs: int = 4) -> list[tuple[str, str]]:
    """``(class name, template)`` of the ``2 * num_pairs`` classes, twins adjacent (label ``2p`` and ``2p+1``)."""
    if not 1 <= num_pairs <= len(PAIRS):
        raise ConfigError(f"num_pairs must be in 1..{len(PAIRS)}, got {num_pairs}")
    out = []
    for pair in PAIRS[:num_pairs]:
        for template in (pair.forward, pair.backward):
            out.append((template.replace("[", "").replace("]", ""), template))
    return out


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1] (bilinear upsampling of a ``cells`` x ``cells`` grid)."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size)
    i0 = np.minimum(coords.astype(int), cells - 1)
    f = coords - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
    """Positive inside the shape, in pixels (approximately a signed distance)."""
    if shape == "circle":
        return radius - np.sqrt(u * u + v * v)
    if shape == "square":
        return radius * 0.85 - np.maximum(np.abs(u), np.abs(v))
    if shape == "diamond":
        return (radius * 1.2 - (np.abs(u) + np.abs(v))) / 1.4
    if shape == "cross":
        arm = radius * 0.35
        return np.maximum(np.minimum(arm - np.abs(u), radius - np.abs(v)),
                          np.minimum(arm - np.abs(v), radius - np.abs(u)))
    if shape == "ring":
        dist = np.sqrt(u * u + v * v)
        return np.minimum(radius - dist, dist - radius * 0.5)
    if shape == "bar":
        return np.minimum(radius * 1.1 - np.abs(u), radius * 0.3 - np.abs(v))
    raise ValueError(shape)


def _pick_colour(rng: np.random.Generator, *avoid: np.ndarray) -> tuple[str, np.ndarray]:
    """A named colour at least 70 (mean abs RGB difference) from every colour in ``avoid``."""
    names = list(_COLOUR_NAMES)
    for _ in range(100):
        name = names[int(rng.integers(len(names)))]
        colour = np.array(_COLOUR_NAMES[name], dtype=np.float32)
        if all(np.abs(colour - other).mean() > 70 for other in avoid):
            return name, colour
    return name, colour


def render_video(kind: str, rng: np.random.Generator, num_frames: int = 32, size: int = 64,
                 width: int | None = None):
    """Render one *forward* video of event ``kind``: uint8 ``(T, size, width, 3)`` and a description.

    ``width`` None: square frames (``size`` x ``size``). In non-square frames positions and travel
    scale with their own axis and object sizes with the shorter side; square frames are rendered as
    before (the same seed gives the same pixels). All appearance and timing parameters are drawn from
    ``rng`` independently of anything else.
    """
    if kind not in {p.kind for p in PAIRS}:
        raise ConfigError(f"unknown synthetic event {kind!r}")
    T, H, W = num_frames, size, size if width is None else width
    S, R = max(H, W), min(H, W)  # texture/gradient extent; object scale
    axes = np.array([W, H], dtype=np.float64)  # (x, y) extents
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    # Background: base colour, a gentle gradient and a smooth texture, static over time.
    base = rng.uniform(10, 90, size=3).astype(np.float32)
    texture = _smooth_noise(rng, S, int(rng.integers(2, 6)))[:H, :W, None] * rng.uniform(-30, 30, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = ((xs * np.cos(angle) + ys * np.sin(angle)) / S)[..., None] * rng.uniform(-25, 25, size=3)
    background = np.clip(base + texture + gradient, 0, 255).astype(np.float32)
    mean_bg = background.reshape(-1, 3).mean(0)
    colour_name, colour = _pick_colour(rng, mean_bg)
    # Static distractors (small shapes of other colours), drawn into the background.
    for _ in range(int(rng.integers(0, 3))):
        _, other = _pick_colour(rng, mean_bg, colour)
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        cx, cy = rng.uniform(0.1, 0.9, size=2) * axes
        radius = rng.uniform(0.04, 0.07) * R
        alpha = np.clip(_shape_sdf(shape, xs - cx, ys - cy, radius) + 0.5, 0, 1)[..., None]
        background = background * (1 - alpha) + other * alpha
    shape = "bar" if kind == "rotate" else _SHAPES[int(rng.integers(len(_SHAPES)))]
    # Timing: the event starts in the first 20% of the video and ends in the last 20%.
    t_start, t_end = rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)
    times = np.linspace(0, 1, T)
    progress = np.clip((times - t_start) / (t_end - t_start), 0, 1)
    if rng.random() < 0.5:  # ease in/out for half of the videos
        progress = progress * progress * (3 - 2 * progress)
    radius = np.full(T, rng.uniform(0.10, 0.16) * R)
    opacity = np.ones(T)
    rotation = np.full(T, rng.uniform(0, np.pi))
    cx = np.full(T, rng.uniform(0.3, 0.7) * W)
    cy = np.full(T, rng.uniform(0.3, 0.7) * H)
    drift = rng.uniform(-0.05, 0.05, size=2) * axes * progress[:, None]
    if kind in ("horizontal", "vertical"):
        length, breadth = (W, H) if kind == "horizontal" else (H, W)
        travel = rng.uniform(0.45, 0.75) * length
        margin = radius[0] * 0.6
        start = rng.uniform(margin, length - margin - travel)
        along = start + travel * progress
        across = rng.uniform(0.25, 0.75) * breadth + drift[:, 0]
        cx, cy = (along, across) if kind == "horizontal" else (across, along)
    elif kind == "scale":
        r0, growth = rng.uniform(0.06, 0.09) * R, rng.uniform(2.5, 4.0)
        radius = r0 * (1 + (growth - 1) * progress)
        cx, cy = cx + drift[:, 0], cy + drift[:, 1]
    elif kind == "fade":
        opacity = progress.copy()
        cx, cy = cx + drift[:, 0], cy + drift[:, 1]
    elif kind == "rotate":
        radius = np.full(T, rng.uniform(0.22, 0.3) * R)
        rotation = rotation + rng.uniform(0.5, 0.85) * np.pi * progress  # clockwise on screen (y down)
    noise_level = rng.uniform(0, 6)
    frames = np.empty((T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        du, dv = xs - cx[t], ys - cy[t]
        cos, sin = np.cos(rotation[t]), np.sin(rotation[t])
        u, v = du * cos + dv * sin, -du * sin + dv * cos
        alpha = np.clip(_shape_sdf(shape, u, v, radius[t]) + 0.5, 0, 1)[..., None] * opacity[t]
        image = background * (1 - alpha) + colour * alpha
        if noise_level > 0:
            image = image + rng.normal(0, noise_level, size=image.shape)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    description = {"object": f"{colour_name} {shape}", "shape": shape, "colour": colour_name,
                   "t_start": float(t_start), "t_end": float(t_end)}
    return frames, description


def encode_video(frames: np.ndarray, path: str | os.PathLike, fmt: str = "webm", fps: int = 12,
                 quality: int = 20, gop_size: int | None = None, preset: str = "ultrafast") -> None:
    """Encode uint8 ``(T, H, W, 3)`` frames with PyAV (VP9 in WebM or H.264 in MP4), atomically.

    ``quality`` is the CRF (lower is better); ``gop_size`` the keyframe interval (encoder default when
    None). Height and width must be even (yuv420p).
    """
    import av

    if fmt not in ("webm", "mp4"):
        raise ConfigError(f"video format must be 'webm' or 'mp4', got {fmt!r}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ConfigError(f"frame size must be even for yuv420p video, got {height}x{width}")
    path = Path(path)
    with atomic_write(path, "wb") as handle, \
            av.open(handle, mode="w", format="webm" if fmt == "webm" else "mp4") as container:
        if fmt == "webm":
            stream = container.add_stream("libvpx-vp9", rate=fps)
            stream.options = {"crf": str(quality), "b": "0", "deadline": "realtime", "cpu-used": "8",
                              "row-mt": "0", "threads": "1"}
        else:
            stream = container.add_stream("libx264", rate=fps)
            stream.options = {"crf": str(quality), "preset": preset, "threads": "1"}
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_frames(frames: np.ndarray, folder: Path, template: str = "{:05d}.jpg", quality: int = 95) -> None:
    from PIL import Image

    tmp = folder.with_name(f".{folder.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for t, image in enumerate(frames):
        Image.fromarray(image).save(tmp / template.format(t + 1), quality=quality)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)


def _make_one(job):
    index, seed, kind, reverse, num_frames, size, width, fmt, target = job
    rng = np.random.default_rng([seed, index])
    frames, description = render_video(kind, rng, num_frames, size, width)
    if reverse:
        frames = np.ascontiguousarray(frames[::-1])
    if fmt == "frames":
        _write_frames(frames, Path(target))
    else:
        encode_video(frames, target, fmt)
    return index, description


def generate_synthetic(out_dir, num_videos: int = 400, frames: int = 32, size: int = 64, seed: int = 0,
                       format: str = "webm", num_pairs: int = 4, val_fraction: float = 0.25,
                       workers: int = 1, progress: bool = False, width: int | None = None) -> Path:
    """Write the synthetic dataset under ``out_dir`` and return ``out_dir``.

    Layout (Something-Something v2, ``build_dataset(format="ssv2", root=out_dir / "videos",
    annotations=out_dir / "train.json", labels=out_dir / "labels.json")``):
    ``labels.json``, ``train.json``, ``validation.json``, ``videos/<id>.webm`` (or ``.mp4`` -- then
    pass ``video_extension=".mp4"`` -- or JPEG folders ``videos/<id>/00001.jpg``, which are also
    described in SSv1 files ``something-something-v1-{labels,train,validation}.csv`` for
    ``format="ssv1"``), plus ``synthetic.json`` recording the settings and how to load the data.
    Labels are balanced (video ``i`` has label ``i mod num_classes``); the last ``val_fraction`` of
    each class goes to validation. Frames are ``size`` x ``size``, or ``size`` (height) x ``width``
    when ``width`` is given (``size=240, width=320, frames=48``: SSv2's resolution and typical length).
    """
    if format not in SYNTH_FORMATS:
        raise ConfigError(f"format must be one of {SYNTH_FORMATS}, got {format!r}")
    if frames < 2 or size < 8 or size % 2:
        raise ConfigError(f"frames must be >= 2 and size an even number >= 8, got frames={frames}, size={size}")
    if width is not None and (width < 8 or width % 2):
        raise ConfigError(f"width must be an even number >= 8 (or None for square frames), got width={width}")
    classes = synthetic_classes(num_pairs)
    num_classes = len(classes)
    if num_videos < 2 * num_classes:
        raise ConfigError(f"num_videos must be at least {2 * num_classes} (two per class), got {num_videos}")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    out = Path(out_dir)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    extension = "" if format == "frames" else f".{format}"
    jobs = []
    for index in range(num_videos):
        label = index % num_classes
        pair = PAIRS[label // 2]
        jobs.append((index, seed, pair.kind, label % 2 == 1, frames, size, width, format,
                     str(videos / f"{index + 1}{extension}")))
    descriptions: dict[int, dict] = {}
    with map_with_progress(_make_one, jobs, workers=workers, processes=True, total=len(jobs), progress=progress,
                           desc="synth", unit="video", chunksize=8) as results:
        for index, description in results:
            descriptions[index] = description
            fault_point("synthetic_video")
    per_class = [[i for i in range(num_videos) if i % num_classes == c] for c in range(num_classes)]
    val_ids = set()
    for members in per_class:
        count = max(1, round(len(members) * val_fraction))
        val_ids.update(members[-count:])
    splits: dict[str, list[dict]] = {"train": [], "validation": []}
    for index in range(num_videos):
        name, template = classes[index % num_classes]
        thing = descriptions[index]["object"]
        entry = {"id": str(index + 1), "label": template.replace("[something]", thing)
                 .replace("[Something]", thing).lower(), "template": template, "placeholders": [thing]}
        splits["validation" if index in val_ids else "train"].append(entry)
    atomic_write_json(out / "labels.json", {name: str(i) for i, (name, _) in enumerate(classes)})
    atomic_write_json(out / "train.json", splits["train"])
    atomic_write_json(out / "validation.json", splits["validation"])
    if format == "frames":
        atomic_write_text(out / "something-something-v1-labels.csv", "".join(f"{n}\n" for n, _ in classes))
        for split, entries in splits.items():
            lines = "".join(f"{e['id']};{e['template'].replace('[', '').replace(']', '')}\n" for e in entries)
            atomic_write_text(out / f"something-something-v1-{split}.csv", lines)
    loading = {"format": "ssv1" if format == "frames" else "ssv2", "root": "videos",
               "annotations": {"train": "something-something-v1-train.csv" if format == "frames" else "train.json",
                               "val": "something-something-v1-validation.csv" if format == "frames"
                               else "validation.json"},
               "labels": "something-something-v1-labels.csv" if format == "frames" else "labels.json"}
    if format == "mp4":
        loading["video_extension"] = ".mp4"
    atomic_write_json(out / "synthetic.json", {
        "generator": "videoattn.data.synthetic", "generator_version": GENERATOR_VERSION,
        "num_videos": num_videos, "frames": frames, "size": size, "width": size if width is None else width,
        "seed": seed, "format": format, "num_pairs": num_pairs, "fps": 12,
        "pairs": [[classes[2 * p][0], classes[2 * p + 1][0]] for p in range(num_pairs)], "load": loading,
    })
    return out


def load_synthetic_settings(out_dir) -> dict:
    """The ``synthetic.json`` of a generated dataset."""
    with open(Path(out_dir) / "synthetic.json", encoding="utf-8") as handle:
        return json.load(handle)
