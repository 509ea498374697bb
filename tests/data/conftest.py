"""Fixtures for the data tests: tiny media written by the tests themselves (never downloaded)."""

from __future__ import annotations

import pytest

from ._data_media import moving_square_frames


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
