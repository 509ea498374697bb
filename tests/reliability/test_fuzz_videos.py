"""Property: video bytes (truncated, bytes changed, zero-length, another container or file type, a
single frame, nothing but a header) are decoded or refused with a DataError naming the file, never
another exception or a hang; a video whose frames are too large to hold is refused before decoding."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability._props import own_error_or_success
from videoattn.data.decoders import PyAVDecoder
from videoattn.data.synthetic import encode_video
from videoattn.errors import DataError


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Bytes of small real videos: 8-frame WebM (VP9) and MP4 (H.264), 1-frame WebM and MP4."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    out = {}
    for name, frames, fmt in (("webm8", 8, "webm"), ("mp48", 8, "mp4"), ("webm1", 1, "webm"), ("mp41", 1, "mp4")):
        path = folder / f"{name}.{fmt}"
        encode_video(rng.integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8), path, fmt, gop_size=4)
        out[name] = path.read_bytes()
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(png, format="PNG")
    out["png"] = png.getvalue()
    out["json"] = json.dumps({"id": 1}).encode()
    return out


@st.composite
def video_bytes(draw, videos):
    base = draw(st.sampled_from(sorted(videos)))
    data = videos[base]
    kind = draw(st.sampled_from(["whole", "truncated", "changed", "changed", "random", "empty"]))
    if kind == "truncated":
        return data[:draw(st.integers(1, max(len(data) - 1, 1)))]
    if kind == "changed":
        changed = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            start = draw(st.integers(0, len(changed) - 1))
            patch = draw(st.binary(min_size=1, max_size=16))
            changed[start:start + len(patch)] = patch
        return bytes(changed)
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=256))
    if kind == "empty":
        return b""
    return data


@given(data=st.data())
def test_video_bytes(data, videos, tmp_path_factory):
    suffix = data.draw(st.sampled_from([".webm", ".mp4", ".mkv", ".avi"]))
    path = tmp_path_factory.mktemp("v") / f"clip{suffix}"
    path.write_bytes(data.draw(video_bytes(videos)))
    decoder = PyAVDecoder(seek=data.draw(st.booleans()))
    want = data.draw(st.sampled_from(["uniform", "first", "last", "repeat"]))

    def indices(total):
        return {"uniform": np.linspace(0, total - 1, 4).round().astype(int), "first": [0], "last": [total - 1],
                "repeat": [0, total - 1, 0]}[want]

    frames = own_error_or_success("video", lambda: decoder.read(str(path), indices), (str(path),))
    if frames is not None:
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[0] >= 1


def test_frames_too_large_are_refused_before_decoding(videos, tmp_path, monkeypatch):
    path = tmp_path / "big.webm"
    path.write_bytes(videos["webm8"])
    monkeypatch.setattr(PyAVDecoder, "max_pixels", 16 * 16 - 1)  # as if the header announced 100k x 100k
    with pytest.raises(DataError, match=rf"{path}: frames of 16x16 pixels"):
        PyAVDecoder().read(str(path), lambda total: [0])
