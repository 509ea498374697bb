"""``data.decoder: nvdec``: PyAV with FFmpeg's CUDA hardware decoding in (spawned) loader workers.

No GPU here: FFmpeg cannot create its CUDA device, so every test below exercises what a machine without
NVDEC does (one warning per process, then software decoding: exactly PyAV's frames), the refusals, and
the spawned workers a CUDA-using training process needs. tests/cuda/test_nvdec_gpu.py checks the
hardware path on a GPU.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from videoattn.data import build_loader
from videoattn.data.decoders import PyAVDecoder, build_decoder
from videoattn.errors import ConfigError

from ._data_media import (
    INDICES,
    frame_number,
    loaded_batches,
    ss_dataset,
    synthetic_datasets,
    write_numbered_media,
)

pytest.importorskip("av.codec.hwaccel", reason="PyAV < 14 has no hardware decoding")


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    return write_numbered_media(tmp_path_factory.mktemp("nvdec_media"), formats=("webm", "mp4"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_datasets(tmp_path_factory.mktemp("nvdec_synth"), formats=("webm",))["webm"]


@pytest.mark.parametrize("name", ["clip.webm", "clip.mp4"])
def test_without_nvdec_the_frames_are_pyavs_after_one_warning(numbered, name):
    decoder = build_decoder("nvdec")
    assert decoder.name == "nvdec" and decoder.needs_spawned_workers
    path = str(numbered / name)
    with pytest.warns(RuntimeWarning, match="hardware decoding is not available in this process"):
        frames = decoder.get_frames(path, INDICES)
    assert decoder.hwaccel_unavailable  # the reason is kept: later opens go straight to software
    np.testing.assert_array_equal(frames, PyAVDecoder().get_frames(path, INDICES))
    assert [frame_number(f) for f in frames] == INDICES
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning in this process
        assert decoder.num_frames(path) == 24


def test_frame_folders_and_old_pyav_are_one_line_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="'nvdec' decodes video files.*use 'nvjpeg'"):
        build_decoder("nvdec", frames=True)
    import builtins

    real_import = builtins.__import__

    def no_hwaccel(name, *args, **kwargs):
        if name == "av.codec.hwaccel":
            raise ImportError("no hwaccel")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hwaccel)
    with pytest.raises(ConfigError, match="needs PyAV >= 14") as error:
        build_decoder("nvdec")
    assert "\n" not in str(error.value)


def test_cache_decoded_is_refused_with_nvdec(synthetic):
    """The decoded-frame cache lives in forked workers; nvdec's workers are spawned."""
    with pytest.raises(ConfigError, match="cache_decoded.*'nvdec' spawns its workers") as error:
        ss_dataset(synthetic, "webm", "nvdec", cache_decoded=True)
    assert "\n" not in str(error.value)


def test_the_decoder_pickles_for_spawned_workers(numbered):
    decoder = build_decoder("nvdec", num_threads=2)
    with pytest.warns(RuntimeWarning):
        decoder.num_frames(str(numbered / "clip.webm"))  # fills the packet-index cache (it has a lock)
    copy = pickle.loads(pickle.dumps(decoder))
    assert copy.hwaccel == "cuda" and copy.num_threads == 2 and copy.name == "nvdec"
    assert copy.hwaccel_unavailable == decoder.hwaccel_unavailable


def test_loader_workers_are_spawned_and_batches_equal_pyavs(synthetic):
    nvdec = ss_dataset(synthetic, "webm", "nvdec")
    assert build_loader(nvdec, 4, num_workers=1).multiprocessing_context is not None
    assert build_loader(ss_dataset(synthetic, "webm", "pyav"), 4, num_workers=1).multiprocessing_context is None
    expected = loaded_batches(ss_dataset(synthetic, "webm", "pyav"), workers=0, epochs=(0,))
    got = loaded_batches(nvdec, workers=1, epochs=(0,))  # a spawned worker, software decoding here
    assert len(got) == len(expected) > 0
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])
