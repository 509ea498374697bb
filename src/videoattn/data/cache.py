"""Keep decoded videos in memory, for small datasets trained on many times (the demo, CPU experiments).

:class:`CachingDecoder` wraps any decoder: the first request for a video decodes *all* its frames
once and stores them (uint8 ``(T, H, W, 3)``) in a bounded, process-wide :class:`FrameCache`; every
later request -- another epoch, another model trained in the same process -- only indexes the stored
frames. Frame sampling and augmentation still happen per request, so the clips are exactly those of
the uncached decoder (same frames, same (seed, epoch, index) randomness).

The cache lives in the process that decodes: with ``num_workers=0`` that is the training process and
the cache survives from one ``train()`` call to the next; with worker processes each worker holds its
own copy (use ``persistent_workers`` so it survives between epochs). Entries are keyed by decoder,
path, size and modification time, so a file that changes on disk is decoded again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

from .decoders import Decoder

DEFAULT_MAX_BYTES = 2 * 1024**3


class FrameCache:
    """A least-recently-used map from video keys to decoded frames, bounded in bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"FrameCache max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            frames = self._items.get(key)
            if frames is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return frames

    def put(self, key, frames: np.ndarray) -> None:
        if frames.nbytes > self.max_bytes:
            return  # larger than the whole cache: never kept
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._items[key] = frames
            self.bytes += frames.nbytes
            while self.bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.bytes -= evicted.nbytes

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


_SHARED: FrameCache | None = None


def shared_frame_cache(max_bytes: int = DEFAULT_MAX_BYTES) -> FrameCache:
    """The process-wide cache (created on first use; a larger ``max_bytes`` raises its bound)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = FrameCache(max_bytes)
    else:
        _SHARED.max_bytes = max(_SHARED.max_bytes, max_bytes)
    return _SHARED


class CachingDecoder(Decoder):
    """Decode each video once (all frames) and serve later requests from a :class:`FrameCache`."""

    def __init__(self, inner: Decoder, cache: FrameCache | None = None):
        self.inner = inner
        self.cache = cache if cache is not None else shared_frame_cache()
        self.name = inner.name  # the frames are the inner decoder's: record its name

    @property
    def needs_spawned_workers(self) -> bool:
        return self.inner.needs_spawned_workers

    def _key(self, path: str):
        stat = os.stat(path)
        return (self.inner.name, os.path.abspath(path), stat.st_size, stat.st_mtime_ns)

    def num_frames(self, path: str) -> int:
        return len(self._all_frames(path))

    def get_frames(self, path: str, indices) -> np.ndarray:
        return self._all_frames(path)[np.asarray(indices, dtype=np.int64)]

    def read(self, path: str, indices_fn) -> np.ndarray:
        frames = self._all_frames(path)
        return frames[np.asarray(indices_fn(len(frames)), dtype=np.int64)]

    def _all_frames(self, path: str) -> np.ndarray:
        key = self._key(path)
        frames = self.cache.get(key)
        if frames is None:
            frames = self.inner.read(path, lambda total: np.arange(total))
            frames.setflags(write=False)  # shared between requests: nobody may modify it in place
            self.cache.put(key, frames)
        return frames

    def with_template(self, template: str) -> CachingDecoder:
        return CachingDecoder(self.inner.with_template(template), self.cache)
