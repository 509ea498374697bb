"""Fixtures for the data tests: tiny media written by the tests themselves (never downloaded)."""

from __future__ import annotations

import numpy as np
import pytest


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


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    """One mp4, one webm and one JPEG frame folder of the same 12-frame clip."""
    from PIL import Image

    from videoattn.data.synthetic import encode_video

    root = tmp_path_factory.mktemp("media")
    frames = moving_square_frames()
    encode_video(frames, root / "clip.mp4", "mp4", quality=10, gop_size=4)
    encode_video(frames, root / "clip.webm", "webm", quality=10, gop_size=4)
    folder = root / "clip_frames"
    folder.mkdir()
    for t, image in enumerate(frames):
        Image.fromarray(image).save(folder / f"{t + 1:05d}.jpg", quality=98)
    return root
