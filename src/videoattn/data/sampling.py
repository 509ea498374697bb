"""Frame-index sampling: pure functions from (video length, settings, random generator) to indices.

Nothing here reads a video. Indices are relative to the start of the usable range
``[0, num_total)``; callers add the annotation's ``start_frame``. Randomness comes only from the
``numpy.random.Generator`` passed in (``None`` means the deterministic test-time choice), so the same
generator state gives the same indices in any process.

* TSN segment sampling (Wang et al., ECCV 2016, used by GTA/RNL/SA-GSM for 2D backbones): the video
  is cut into ``num_segments`` equal segments; training takes one random frame per segment, testing
  the centre frame of each segment. Videos shorter than ``num_segments`` repeat frames
  (``floor(k * num_total / num_segments)``).
* Dense clips (I3D/NL/BAT/SlowFast): ``clip_len`` frames ``frame_interval`` apart; training takes a
  random start, testing ``num_clips`` starts spread evenly over the video. Indices past the end wrap
  around (loop the video), as mmaction2 does.
* Multi-view test sampling: ``num_clips`` temporal views per video. For TSN, view ``c`` shifts the
  sampling point inside each segment to ``(c + 0.5) / num_clips`` of the segment ("twice-sample" of
  TSM is ``num_clips=2``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["tsn_indices", "dense_indices", "sample_views", "SAMPLING_MODES"]

SAMPLING_MODES = ("tsn", "dense")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def tsn_indices(num_total: int, num_segments: int, rng: np.random.Generator | None = None,
                offset: float = 0.5) -> np.ndarray:
    """One index per segment: random within the segment when ``rng`` is given, else at ``offset``.

    ``offset`` (0 <= offset < 1) is the relative position inside each segment used at test time;
    0.5 is the centre. Returns int64 indices, non-decreasing, within ``[0, num_total)``.
    """
    _check_positive(num_total=num_total, num_segments=num_segments)
    if not 0.0 <= offset < 1.0:
        raise ConfigError(f"offset must be in [0, 1), got {offset}")
    segment = num_total / num_segments
    starts = np.arange(num_segments) * segment
    if rng is None:
        positions = starts + segment * offset
    elif num_total >= num_segments:
        # Integer segment bounds [floor(k*s), floor((k+1)*s)) so every frame belongs to one segment.
        lower = np.floor(starts).astype(np.int64)
        upper = np.floor(starts + segment).astype(np.int64)
        upper = np.maximum(upper, lower + 1)
        return lower + (rng.random(num_segments) * (upper - lower)).astype(np.int64)
    else:
        positions = starts
    return np.clip(np.floor(positions).astype(np.int64), 0, num_total - 1)


def dense_indices(num_total: int, clip_len: int, frame_interval: int = 1,
                  rng: np.random.Generator | None = None, num_clips: int = 1) -> np.ndarray:
    """``num_clips`` clips of ``clip_len`` frames ``frame_interval`` apart; shape ``(num_clips, clip_len)``.

    Training (``rng`` given, ``num_clips`` 1): a random start in ``[0, num_total - span]``.
    Testing: starts spread evenly, each clip centred in its share of the video
    (``num_clips=1`` gives the centre clip). Past the end, indices wrap (``mod num_total``).
    """
    _check_positive(num_total=num_total, clip_len=clip_len, frame_interval=frame_interval,
                    num_clips=num_clips)
    span = (clip_len - 1) * frame_interval + 1
    room = max(num_total - span, 0)
    if rng is not None:
        starts = rng.integers(0, room + 1, size=num_clips)
    else:
        share = room / num_clips
        starts = np.floor(share * (np.arange(num_clips) + 0.5)).astype(np.int64) if room else \
            np.zeros(num_clips, dtype=np.int64)
    offsets = np.arange(clip_len) * frame_interval
    return (starts[:, None] + offsets[None, :]) % num_total


def sample_views(num_total: int, num_frames: int, sampling: str = "tsn", frame_interval: int = 1,
                 num_clips: int = 1, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices for every temporal view: shape ``(num_clips, num_frames)``.

    ``rng`` given: training sampling (one random view; ``num_clips`` ignored). ``rng`` None:
    deterministic test views.
    """
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    _check_positive(num_clips=num_clips, num_frames=num_frames)
    if sampling == "tsn":
        if rng is not None:
            return tsn_indices(num_total, num_frames, rng)[None, :]
        return np.stack([tsn_indices(num_total, num_frames, None, offset=(c + 0.5) / num_clips)
                         for c in range(num_clips)])
    if rng is not None:
        return dense_indices(num_total, num_frames, frame_interval, rng, 1)
    return dense_indices(num_total, num_frames, frame_interval, None, num_clips)
