"""``data.decoder: nvdec`` on a GPU: FFmpeg's CUDA hardware decoding (NVDEC) through PyAV.

tests/data/test_nvdec_decoder.py checks everything a machine without NVDEC can (the software fallback,
refusals, spawned workers); these check what only a GPU can: that the hardware path is taken, its frames
are the ones asked for and close to software decoding's, and a training epoch fed by spawned workers
that decode with it. Never run by the session that wrote them (no GPU was available).
"""

import warnings

import numpy as np
import pytest

from tests.data._data_media import frame_number, train_config, write_numbered_media
from videoattn.data.decoders import PyAVDecoder, build_decoder

pytest.importorskip("av.codec.hwaccel", reason="PyAV < 14 has no hardware decoding")

INDICES = [3, 1, 1, 20, 7, 0, 23, 12]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return write_numbered_media(tmp_path_factory.mktemp("nvdec_gpu"), formats=("webm", "mp4"))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["clip.webm", "clip.mp4"])
def test_nvdec_decodes_the_asked_frames_in_hardware(media, name):
    decoder = build_decoder("nvdec")
    path = str(media / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to software would warn
        frames = decoder.get_frames(path, INDICES)
    assert decoder.hwaccel_unavailable is None
    assert [frame_number(f) for f in frames] == INDICES
    software = PyAVDecoder().get_frames(path, INDICES)
    difference = np.abs(frames.astype(int) - software.astype(int))
    print(f"NVDEC vs software: max {difference.max()}, mean {difference.mean():.3f}")
    assert difference.mean() < 2.0


@pytest.mark.cuda
def test_training_epoch_with_nvdec_workers(tmp_path):
    from videoattn.data import generate_synthetic
    from videoattn.engine import train

    root = generate_synthetic(tmp_path / "ssv2", num_videos=16, frames=10, size=32, format="webm", seed=0)
    config = train_config(root, "webm", "nvdec", tmp_path / "run", device="cuda", deterministic=False)
    result = train(config)  # spawned workers decode with NVDEC while the training process uses CUDA
    assert result.global_step >= 2 and result.summary["num_skipped"] == 0
