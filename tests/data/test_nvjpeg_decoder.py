"""``data.decoder: nvjpeg``: workers hand over the sampled JPEG files' bytes (the payload ``dali`` uses for
frame folders), the main process decodes a batch with one ``torchvision.io.decode_jpeg`` call.

On a CPU ``decode_jpeg`` runs libjpeg-turbo, standing in for nvJPEG on CUDA (``tests/cuda/test_nvjpeg_gpu.py``):
the payloads, the batching, the Pillow fallback and the substitution are the same code on both. The
tests needing torchvision skip where it is missing or cannot load its image library (a torchvision
built for another torch); the configuration errors are checked everywhere.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch

from videoattn.data import build_dataset, build_loader
from videoattn.data.decoders import FrameFolderDecoder, build_decoder
from videoattn.data.deferred import DeferredDecoder
from videoattn.data.nvjpeg import _unavailable_reason, nvjpeg_available
from videoattn.errors import ConfigError, DataError

from ._data_media import (
    INDICES,
    assert_workers_decode_as_main,
    frame_number,
    matched_batches,
    moving_square_frames,
    ss_dataset,
    synthetic_datasets,
    train_config,
    write_numbered_media,
)

needs_torchvision = pytest.mark.skipif(not nvjpeg_available(), reason=f"torchvision.io.decode_jpeg cannot be "
                                                                      f"used here: {_unavailable_reason()}")

#: decode_jpeg (libjpeg-turbo) against Pillow (libjpeg-turbo too): identical pixels on every JPEG measured
#: (240 x 320; quality 75/95; 4:4:4, 4:2:2, 4:2:0; progressive; grayscale; CMYK). Pillow built on IJG libjpeg
#: could differ by 1-2 (IDCT rounding); nvJPEG on CUDA is checked with its own tolerance in tests/cuda.
TOLERANCE = 0


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """A JPEG folder whose 24 frames each encode their index, and a WebM of the same frames."""
    return write_numbered_media(tmp_path_factory.mktemp("nvjpeg_media"), formats=("frames", "webm"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny SSv1-layout dataset (JPEG folders), and a WebM one."""
    return synthetic_datasets(tmp_path_factory.mktemp("nvjpeg_synth"), formats=("frames", "webm"))


def _dataset(root, decoder, split="train", **options):
    return ss_dataset(root, "frames", decoder, split, **options)


# ---------------------------------------------------------------- configuration (with or without torchvision)
def test_video_files_are_a_one_line_config_error(synthetic):
    root = synthetic["webm"]
    with pytest.raises(ConfigError, match=r"'nvjpeg' decodes JPEG frame folders .* use data.decoder=dali \(GPU\) "
                                          r"or pyav for videos") as caught:
        build_dataset("ssv2", root=root / "videos", annotations=root / "train.json", labels=root / "labels.json",
                      decoder="nvjpeg")
    assert "\n" not in str(caught.value) and "data.decoder" in str(caught.value)


def test_missing_torchvision_names_the_extra(monkeypatch, synthetic):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now raises ImportError
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    _unavailable_reason.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            _dataset(synthetic["frames"], "nvjpeg")
    finally:
        _unavailable_reason.cache_clear()
    message = str(caught.value)
    assert "pip install 'videoattn[nvjpeg]'" in message and "'data.decoder'" in message and "\n" not in message
    assert "ImportError" in message or "ModuleNotFoundError" in message


# ---------------------------------------------------------------- decoding
@needs_torchvision
def test_frames_are_pillow_frames(numbered):
    folder = str(numbered / "clip_frames")
    decoder = build_decoder("nvjpeg", frames=True)
    frames = decoder.get_frames(folder, INDICES)
    pillow = FrameFolderDecoder().get_frames(folder, INDICES)
    assert frames.shape == pillow.shape == (len(INDICES), 32, 48, 3) and frames.dtype == np.uint8
    assert [frame_number(f) for f in frames] == INDICES
    assert int(np.abs(frames.astype(int) - pillow.astype(int)).max()) <= TOLERANCE
    assert decoder.num_frames(folder) == 24 and not decoder.fallbacks


@needs_torchvision
@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_come_out_rgb_as_pillow_gives_them(tmp_path, mode):
    from PIL import Image

    folder = tmp_path / mode
    folder.mkdir()
    for t, image in enumerate(moving_square_frames(4, 32, 48)):
        Image.fromarray(image).convert(mode).save(folder / f"{t + 1:05d}.jpg", quality=90)
    decoder = build_decoder("nvjpeg", frames=True)
    frames = decoder.get_frames(str(folder), [0, 3])
    pillow = FrameFolderDecoder().get_frames(str(folder), [0, 3])
    assert frames.shape == (2, 32, 48, 3) and not decoder.fallbacks
    assert int(np.abs(frames.astype(int) - pillow.astype(int)).max()) <= TOLERANCE


@needs_torchvision
def test_one_batch_call_for_all_clips_and_read_only_bytes(numbered, monkeypatch):
    import torchvision.io

    calls = []
    original = torchvision.io.decode_jpeg

    def counting(blobs, **kwargs):
        calls.append(len(blobs))
        return original(blobs, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", counting)
    decoder = build_decoder("nvjpeg", frames=True)
    folder = str(numbered / "clip_frames")
    payloads = [decoder.prepare(folder, lambda total, s=s: [s, s + 2, s]) for s in range(3)]
    assert not payloads[0].data[0].flags.writeable  # np.frombuffer of the file: read-only, copied for torch
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "array is not writable" warning from torch.from_numpy either
        clips = decoder.decode(payloads, "cpu")
    assert calls == [6]  # 3 clips x 2 distinct files, one call
    assert [[frame_number(f) for f in clip.numpy()] for clip in clips] == [[s, s + 2, s] for s in range(3)]


@needs_torchvision
def test_undecodable_payload_falls_back_to_pillow_on_its_own_files(numbered, tmp_path):
    """A folder named by another template (a frame_list record's own): the fallback reads the payload's
    files with Pillow, not the decoder's default template; the batch's good clip is unaffected."""
    folder = tmp_path / "img_frames"
    folder.mkdir()
    for t in range(24):
        shutil.copy(numbered / "clip_frames" / f"{t + 1:05d}.jpg", folder / f"img_{t + 1:05d}.jpg")
    decoder = build_decoder("nvjpeg", frames=True).with_template("img_{:05d}.jpg")
    good = decoder.prepare(str(folder), lambda total: [1, 2])
    bad = decoder.prepare(str(folder), lambda total: [7, 3, 7])
    bad.data = [np.frombuffer(b"not a jpeg" * 8, dtype=np.uint8) for _ in bad.data]
    with pytest.warns(RuntimeWarning, match=r"decode_jpeg could not decode .*img_frames \(RuntimeError: Not a "
                                            r"JPEG file.*\); decoding it .* with the CPU decoder"):
        frames, kept = decoder.decode([bad, good], "cpu")
    assert [frame_number(f) for f in frames.numpy()] == [7, 3, 7]
    assert [frame_number(f) for f in kept.numpy()] == [1, 2]
    assert torch.equal(frames, torch.from_numpy(FrameFolderDecoder("img_{:05d}.jpg").get_frames(str(folder),
                                                                                                [7, 3, 7])))
    assert decoder.fallbacks[0][0] == str(folder) and ".cpp" not in decoder.fallbacks[0][1]


@needs_torchvision
def test_a_file_neither_reads_is_a_data_error_naming_both(numbered, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(numbered / "clip_frames", folder)
    decoder = build_decoder("nvjpeg", frames=True)
    payload = decoder.prepare(str(folder), lambda total: [4, 5])
    data = (folder / "00005.jpg").read_bytes()
    (folder / "00005.jpg").write_bytes(data[: len(data) // 2])  # truncated after the worker read the header
    payload.data[0] = np.frombuffer(data[: len(data) // 2], dtype=np.uint8)
    with pytest.warns(RuntimeWarning, match="decode_jpeg could not decode"):
        (result,) = decoder.decode([payload], "cpu")
    assert isinstance(result, DataError)
    assert "00005.jpg" in str(result) and "truncated" in str(result) and "(decode_jpeg: " in str(result)


@needs_torchvision
def test_cache_decoded_and_cpu_transforms_are_refused(synthetic):
    from videoattn.data.device_transforms import resolve_transforms_on

    with pytest.raises(ConfigError, match="cache_decoded.*'nvjpeg' decodes in the training process"):
        _dataset(synthetic["frames"], "nvjpeg", cache_decoded=True)
    ds = _dataset(synthetic["frames"], "nvjpeg")
    assert resolve_transforms_on("auto", "cpu", ds) == "device"
    with pytest.raises(ConfigError, match="'cpu' does not go with data.decoder 'nvjpeg'"):
        resolve_transforms_on("cpu", "cpu", ds)
    with pytest.raises(ConfigError, match="data.decoder 'nvjpeg' decodes in the training process"):
        ds.defer_decoding("cpu")


@needs_torchvision
def test_batches_equal_the_frames_decoders_batches(synthetic):
    """Same seed: same items, labels (flip map), crop boxes, flips and frames as the Pillow decoder."""
    cpu = _dataset(synthetic["frames"], "frames")
    cpu.set_transforms_on("device")
    nvjpeg = _dataset(synthetic["frames"], "nvjpeg")
    nvjpeg.set_transforms_on("device")
    assert nvjpeg.defer_decoding("cpu") and nvjpeg.metadata()["decoder"] == "nvjpeg"
    assert nvjpeg.metadata()["decoder_version"].startswith("torchvision ")
    flips = 0
    for expected, got, clips in matched_batches(cpu, nvjpeg):
        assert int((got["video"].int() - expected["video"].int()).abs().max()) <= TOLERANCE
        assert (clips[0] - clips[1]).abs().max() <= 1e-6
        flips += int(got["flip"].sum())
    assert flips > 0 and not nvjpeg.decoder.fallbacks


@needs_torchvision
def test_payloads_through_workers_equal_the_main_process(synthetic):
    ds = _dataset(synthetic["frames"], "nvjpeg")
    ds.set_transforms_on("device")
    ds.defer_decoding("cpu")
    assert_workers_decode_as_main(ds)


@pytest.fixture
def flaky(synthetic, tmp_path, monkeypatch):
    """A copy of the SSv1 dataset where folder 0 is undecodable by decode_jpeg only ("bad": its payload is
    garbage) and folder 1 by decode_jpeg and Pillow ("dead": its files are garbage too by the time the
    main process falls back), as for files whose damage shows only when decoded."""
    root = tmp_path / "flaky"
    shutil.copytree(synthetic["frames"], root)
    first = (root / "something-something-v1-train.csv").read_text().splitlines()[:2]
    bad, dead = (line.split(";")[0] for line in first)
    prepare = DeferredDecoder.prepare

    def damaged(self, path, indices_fn, device=None):
        payload = prepare(self, path, indices_fn, device)
        if path.endswith((f"/{bad}", f"/{dead}")):
            payload.data = [np.frombuffer(b"not a jpeg " * 8, dtype=np.uint8) for _ in payload.data]
        if path.endswith(f"/{dead}"):
            for name in payload.files:
                with open(name, "wb") as handle:
                    handle.write(b"\0" * 64)
        return payload

    monkeypatch.setattr(DeferredDecoder, "prepare", damaged)
    return root, bad, dead


@needs_torchvision
def test_training_falls_back_to_pillow_then_substitutes(flaky):
    root, bad, dead = flaky
    ds = _dataset(root, "nvjpeg")
    ds.set_transforms_on("device")
    ds.defer_decoding("cpu")
    reference = _dataset(root, "frames")
    reference.set_transforms_on("device")
    names = [r.path.rsplit("/", 1)[-1] for r in ds.records]
    expected = reference[(0, 0)]  # before folder 1's files are damaged
    with pytest.warns(RuntimeWarning, match="decode_jpeg could not decode .*; decoding it .* with the CPU decoder"):
        batch = ds.decode_batch(build_loader(ds, 1, shuffle=False, num_workers=0).collate_fn(
            [ds[(i, 0)] for i in (0, 1, 2)]), "cpu")
    assert names[0] == bad and batch["index"][0] == 0  # Pillow decoded it: not bad data
    assert torch.equal(batch["video"][0], expected["video"])
    assert torch.equal(batch["crop_box"][0], expected["crop_box"])
    assert batch["index"][1] != 1 and len(batch["skipped"]) == 1  # both failed: recorded, substituted
    assert batch["skipped"][0]["path"].endswith(dead) and "decode_jpeg:" in batch["skipped"][0]["reason"]
    assert batch["video"].shape[0] == batch["label"].shape[0] == 3


@needs_torchvision
def test_evaluation_drops_what_neither_decoder_reads(flaky):
    root, bad, dead = flaky
    val = _dataset(root, "nvjpeg", split="val")
    val.records = _dataset(root, "nvjpeg").records  # the flaky folders are training entries
    val.defer_decoding("cpu")
    with pytest.warns(RuntimeWarning, match="decode_jpeg could not decode"):
        batch = val.decode_batch(build_loader(val, 1, shuffle=False, num_workers=0).collate_fn(
            [val[(i, 0)] for i in (0, 1, 2)]), "cpu")
    assert batch["index"].tolist() == [0, 2] and batch["video"].shape[:2] == (2, 3)
    assert len(batch["dropped"]) == 1 and batch["dropped"][0]["index"] == 1
    assert batch["dropped"][0]["path"].endswith(dead)


@needs_torchvision
def test_training_and_validation_run_with_nvjpeg(synthetic, tmp_path):
    from videoattn.engine import train

    root = synthetic["frames"]
    config = train_config(root, "frames", "nvjpeg", tmp_path / "run", deterministic=False)
    result = train(config)
    assert result.global_step >= 2 and result.summary["loader"]["transforms_on"] == "device"
    assert result.summary["num_skipped"] == 0
    final = result.summary["final"]
    assert final["val_videos_evaluated"] == len(_dataset(root, "frames", split="val")) > 0
    assert np.isfinite(final["train_loss"])
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["train_data"]["decoder"] == "nvjpeg"
