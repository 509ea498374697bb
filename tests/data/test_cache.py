import numpy as np
import torch

from videoattn.data import build_dataset
from videoattn.data.cache import CachingDecoder, FrameCache
from videoattn.data.decoders import build_decoder
from videoattn.data.synthetic import generate_synthetic


def test_cache_bounds_bytes_and_evicts_least_recent():
    cache = FrameCache(max_bytes=300)
    a, b, c = (np.zeros(100, np.uint8) for _ in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("c", c)
    cache.put("d", np.zeros(100, np.uint8))
    assert cache.get("b") is None and cache.get("a") is a and len(cache) == 3 and cache.bytes == 300
    cache.put("huge", np.zeros(1000, np.uint8))
    assert cache.get("huge") is None


def test_cached_clips_equal_uncached_and_decode_once(tmp_path, monkeypatch):
    root = generate_synthetic(tmp_path / "synth", num_videos=16, frames=12, size=32, seed=3)
    kwargs = dict(format="ssv2", root=root / "videos", annotations=root / "train.json",
                  labels=root / "labels.json", num_frames=4, size=32, flip="none")
    plain = build_dataset(**kwargs)
    cached = build_dataset(**kwargs, cache_decoded=True)
    assert isinstance(cached.decoder, CachingDecoder) and cached.decoder_backend == plain.decoder_backend
    cached.decoder.cache.clear()
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(plain)):
            torch.testing.assert_close(cached[index]["video"], plain[index]["video"], rtol=0, atol=0)
    calls = []
    inner = cached.decoder.inner
    monkeypatch.setattr(inner, "read", lambda *a: calls.append(a) or np.zeros((1, 1, 1, 3), np.uint8))
    cached.set_epoch(2)
    _ = [cached[i] for i in range(len(cached))]
    assert calls == []  # every video came from memory


def test_changed_file_is_decoded_again(tmp_path):
    root = generate_synthetic(tmp_path / "synth", num_videos=16, frames=8, size=32, seed=0)
    decoder = CachingDecoder(build_decoder("pyav"), FrameCache(10**8))
    first, second = root / "videos" / "1.webm", root / "videos" / "2.webm"
    frames = decoder.read(str(first), lambda total: np.arange(total))
    second_frames = decoder.read(str(second), lambda total: np.arange(total))
    first.write_bytes(second.read_bytes())
    np.testing.assert_array_equal(decoder.read(str(first), lambda total: np.arange(total)), second_frames)
    assert not np.array_equal(frames, second_frames)
