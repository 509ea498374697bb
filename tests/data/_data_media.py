"""Helpers shared by the data tests (tiny media with frame numbers drawn in)."""

from __future__ import annotations

import numpy as np


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
