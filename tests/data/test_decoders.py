"""Decoders: frame counts, frame-accurate seeking (same frames as decoding everything), frame folders."""

from __future__ import annotations

import numpy as np
import pytest

from videoattn.data.decoders import (
    FrameFolderDecoder,
    PyAVDecoder,
    TorchCodecDecoder,
    build_decoder,
    torchcodec_available,
)
from videoattn.errors import DataError, UnknownNameError

from ._data_media import frame_number


@pytest.mark.parametrize("seek_gap", [0, 8])  # 0: seek to every keyframe group; 8: decode on over short gaps
@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm"])
def test_pyav_seeking_returns_the_frames_asked(media_dir, name, seek_gap):
    path = str(media_dir / name)
    seeking, sequential = PyAVDecoder(seek=True, seek_gap=seek_gap), PyAVDecoder(seek=False)
    assert seeking.num_frames(path) == 12 == sequential.num_frames(path)
    indices = [11, 0, 5, 5, 9, 2]  # unsorted, repeated, across several keyframe groups (gop 4)
    frames = seeking.get_frames(path, indices)
    assert frames.shape == (6, 32, 48, 3) and frames.dtype == np.uint8
    assert [frame_number(f) for f in frames] == indices
    np.testing.assert_array_equal(frames, sequential.get_frames(path, indices))


def test_frame_folder_decoder(media_dir):
    decoder = FrameFolderDecoder("{:05d}.jpg")
    folder = str(media_dir / "clip_frames")
    assert decoder.num_frames(folder) == 12
    frames = decoder.get_frames(folder, [3, 0, 11])
    assert [frame_number(f) for f in frames] == [3, 0, 11]
    with pytest.raises(DataError, match="no frames named like"):
        FrameFolderDecoder("img_{:05d}.jpg").num_frames(folder)


def test_read_passes_the_frame_count_to_the_sampler(media_dir):
    counts = []

    def pick(total):
        counts.append(total)
        return [total - 1]

    frames = PyAVDecoder().read(str(media_dir / "clip.webm"), pick)
    assert counts == [12] and frame_number(frames[0]) == 11
    with pytest.raises(DataError, match="outside the video's 12 frames"):
        PyAVDecoder().get_frames(str(media_dir / "clip.webm"), [12])


def test_build_decoder_choices():
    assert build_decoder("auto", frames=True).name == "frames"
    assert build_decoder("auto").name == "pyav"
    with pytest.raises(UnknownNameError, match="decoder"):
        build_decoder("decord")
    with pytest.raises(DataError, match="frame folders"):
        build_decoder("pyav", frames=True)


@pytest.mark.skipif(not torchcodec_available(), reason="torchcodec is an optional backend")
def test_torchcodec_matches_pyav(media_dir):  # pragma: no cover - runs only where torchcodec is installed
    path = str(media_dir / "clip.mp4")
    frames = TorchCodecDecoder().get_frames(path, [0, 7])
    assert [frame_number(f) for f in frames] == [0, 7]


def test_torchcodec_missing_is_a_clear_error():
    if torchcodec_available():
        pytest.skip("torchcodec installed")
    with pytest.raises(DataError, match="pip install torchcodec"):
        TorchCodecDecoder()
