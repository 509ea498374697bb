"""Helpers shared by the data tests (tiny media with frame numbers drawn in)."""

from __future__ import annotations

import numpy as np

#: Frame indices every decoder test asks for: out of order, repeated, both ends of a 24-frame video.
INDICES = [3, 1, 1, 20, 7, 0, 23, 12]


def moving_square_frames(num_frames: int = 12, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): a bright square moving right on a dark textured background.

    Each frame also encodes its own index in the top-left pixel block (value 8 * index), so tests can
    tell which frame a decoder returned.
    """
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0).copy()
    for t in range(num_frames):
        x = int(t * (width - 8) / max(num_frames - 1, 1))
        frames[t, 12:20, x:x + 8] = 230
        frames[t, :8, :8] = min(8 * t, 255)
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Inverse of the index code written by :func:`moving_square_frames` (robust to compression)."""
    return int(round(float(frame[2:6, 2:6].mean()) / 8))


def write_numbered_media(root, formats=("webm", "mp4", "frames")):
    """Into ``root``: ``clip.webm`` / ``clip.mp4`` / a JPEG folder ``clip_frames`` of the same 24 frames, each
    encoding its index (:func:`moving_square_frames`); returns ``root``."""
    from PIL import Image

    from videoattn.data.synthetic import encode_video

    frames = moving_square_frames(24, 32, 48)
    for fmt in formats:
        if fmt == "frames":
            (root / "clip_frames").mkdir()
            for t, image in enumerate(frames):
                Image.fromarray(image).save(root / "clip_frames" / f"{t + 1:05d}.jpg", quality=95)
        else:
            encode_video(frames, root / f"clip.{fmt}", fmt, quality=10, gop_size=5)
    return root


def ss_files(root, fmt: str, split: str = "train") -> dict:
    """The annotation files of a ``generate_synthetic`` dataset at ``root`` as ``build_dataset`` takes them:
    SSv1 CSVs for JPEG folders, SSv2 JSON otherwise."""
    if fmt == "frames":
        return {"annotations": root / f"something-something-v1-{'train' if split == 'train' else 'validation'}.csv",
                "labels": root / "something-something-v1-labels.csv"}
    return {"annotations": root / ("train.json" if split == "train" else "validation.json"),
            "labels": root / "labels.json"}


def ss_dataset(root, fmt: str, decoder: str, split: str = "train", **options):
    """A 4-frame, 24 px dataset over a ``generate_synthetic`` folder (SSv1 for frames, SSv2 for videos)."""
    from videoattn.data import build_dataset

    return build_dataset("ssv1" if fmt == "frames" else "ssv2", root=root / "videos", split=split, size=24,
                         scale_size=28, num_frames=4, decoder=decoder, seed=5, flip="standard",
                         **ss_files(root, fmt, split), **options)


def loaded_batches(ds, workers: int = 0, epochs=(0, 1)) -> list:
    """Every batch of two epochs (batch 4, shuffled, seeded), payloads decoded on the CPU as the engine does."""
    from videoattn.data import build_loader

    loader = build_loader(ds, 4, shuffle=True, num_workers=workers, seed=3, drop_last=True)
    out = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        for batch in loader:
            if "payload" in batch:
                batch = ds.decode_batch(batch, "cpu")
            out.append(batch)
    return out


def train_config(root, fmt: str, decoder: str, work_dir, device: str = "cpu", **train):
    """A one-epoch TSM-R18 (width 8) run with validation on a ``generate_synthetic`` folder, ``data.decoder``
    = ``decoder``."""
    from videoattn.config import config_from_dict

    data = {"decoder": decoder, "size": 24, "scale_size": 28, "num_workers": 1, "root": str(root / "videos"),
            "format": "ssv1" if fmt == "frames" else "ssv2"}
    data.update(train_annotations=str(ss_files(root, fmt)["annotations"]),
                val_annotations=str(ss_files(root, fmt, "val")["annotations"]),
                labels=str(ss_files(root, fmt)["labels"]))
    return config_from_dict({
        "model": {"name": "r2d18", "num_frames": 4, "options": {"variant": "tsm", "base_channels": 8}},
        "data": data,
        "train": {"work_dir": str(work_dir), "epochs": 1, "batch_size": 4, "lr": 0.01, "log_interval": 1,
                  "seed": 1, "num_threads": 1, "progress": False, "device": device, "val_interval": 1,
                  "deterministic": True, **train},
        "eval": {"batch_size": 4}})


def synthetic_datasets(root, formats=("webm", "frames")) -> dict:
    """Tiny SSv2-layout datasets from ``generate_synthetic`` (16 videos, 10 frames, 32 px, seed 0), one per
    format (``webm`` videos, ``frames``: SSv1 JPEG folders), under ``root/<format>``."""
    from videoattn.data import generate_synthetic

    return {fmt: generate_synthetic(root / fmt, num_videos=16, frames=10, size=32, format=fmt, seed=0)
            for fmt in formats}


def matched_batches(reference, candidate):
    """Yield ``(expected, got, clips)`` per batch of two datasets built with the same seed, after asserting
    what must be identical whatever decodes the frames: labels, indices, crop boxes, flips, and the frames'
    dtype (uint8) and shape. ``clips`` are both batches through the device transforms (reference's)."""
    import torch

    from videoattn.data.device_transforms import transform_batch_on_device

    for expected, got in zip(loaded_batches(reference), loaded_batches(candidate), strict=True):
        for key in ("label", "index", "crop_box", "flip"):
            assert torch.equal(expected[key], got[key]), key
        assert got["video"].dtype == torch.uint8 and got["video"].shape == expected["video"].shape
        clips = [transform_batch_on_device(b["video"], b["crop_box"], b["flip"], reference.transform)
                 for b in (expected, got)]
        yield expected, got, clips


def assert_workers_decode_as_main(ds) -> None:
    """A deferred-decoding dataset's payloads, pickled through one loader worker, decode to the same
    batches (frames, labels, indices, crops, flips, epoch tags) as without workers."""
    import torch

    for a, b in zip(loaded_batches(ds, 0, (1,)), loaded_batches(ds, 1, (1,)), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("video", "label", "index", "crop_box", "flip"))
