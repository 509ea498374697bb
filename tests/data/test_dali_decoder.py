"""``data.decoder: dali``: workers hand over encoded payloads, the main process decodes them with DALI.

DALI's CPU backend stands in for the GPU (``mixed``) backend here: the pipeline, the payloads, the
fallback and the substitution are the same code on both; only the backend string differs. It decodes
VP9 WebM (SSv2's format) and JPEG (SSv1's frame folders), which is what these tests use.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from videoattn.data import build_dataset, build_loader  # noqa: E402
from videoattn.data.dali import DaliDecoder  # noqa: E402
from videoattn.data.decoders import FrameFolderDecoder, PyAVDecoder, build_decoder  # noqa: E402
from videoattn.errors import ConfigError  # noqa: E402

from ._data_media import (  # noqa: E402
    INDICES,
    assert_workers_decode_as_main,
    frame_number,
    matched_batches,
    ss_dataset,
    synthetic_datasets,
    train_config,
    write_numbered_media,
)

#: PyAV (swscale) and DALI convert the same decoded YUV 4:2:0 planes to RGB differently: swscale's default
#: replicates each chroma sample over its 2 x 2 pixels, DALI interpolates chroma bilinearly. Flat areas
#: agree within 3; at sharp colour edges pixels differ by up to ~60 (measured: max 62, mean 2.1 on the
#: 32 px synthetic clips; max 68, mean 1.3, 99th percentile 5 at 240 x 320). The frames themselves are
#: the same: :func:`_bilinear_chroma_rgb` of PyAV's planes matches DALI within 1.
MEAN_TOLERANCE = 3.0


def _bilinear_chroma_rgb(path, indices) -> np.ndarray:
    """PyAV's decoded YUV 4:2:0 planes at ``indices``, to RGB with bilinear (centred) chroma and BT.601
    limited-range coefficients: the conversion DALI's decoder applies."""
    import av

    with av.open(path) as container:
        decoded = [frame for frame in container.decode(container.streams.video[0])]
    out = []
    for frame in (decoded[i] for i in indices):
        height, width = frame.height, frame.width

        def plane(k, h, w, frame=frame):
            return np.frombuffer(frame.planes[k], np.uint8).reshape(h, frame.planes[k].line_size)[:, :w]

        luma = plane(0, height, width).astype(np.float64) - 16
        chroma = torch.tensor(np.stack([plane(1, height // 2, width // 2), plane(2, height // 2, width // 2)])[None],
                              dtype=torch.float64)
        u, v = (torch.nn.functional.interpolate(chroma, size=(height, width), mode="bilinear",
                                                align_corners=False)[0].numpy() - 128)
        rgb = np.stack([1.164 * luma + 1.596 * v, 1.164 * luma - 0.392 * u - 0.813 * v, 1.164 * luma + 2.017 * u], -1)
        out.append(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """A 24-frame VP9 WebM, an H.264 MP4 and a JPEG folder whose frames each encode their index."""
    return write_numbered_media(tmp_path_factory.mktemp("dali_media"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Two tiny SSv2-layout datasets: WebM videos and (SSv1) JPEG folders."""
    return synthetic_datasets(tmp_path_factory.mktemp("dali_synth"))


_dataset = ss_dataset


def test_video_frames_are_pyav_frames_at_the_same_indices(numbered):
    path = str(numbered / "clip.webm")
    dali = build_decoder("dali").get_frames(path, INDICES)
    pyav = PyAVDecoder().get_frames(path, INDICES)
    assert dali.shape == pyav.shape == (len(INDICES), 32, 48, 3) and dali.dtype == np.uint8
    assert [frame_number(f) for f in dali] == INDICES == [frame_number(f) for f in pyav]
    assert np.abs(dali.astype(int) - pyav.astype(int)).mean() < MEAN_TOLERANCE
    assert np.abs(dali.astype(int) - _bilinear_chroma_rgb(path, INDICES).astype(int)).max() <= 1


def test_jpeg_frames_are_pillow_frames(numbered):
    folder = str(numbered / "clip_frames")
    decoder = build_decoder("dali", frames=True)
    dali = decoder.get_frames(folder, INDICES)
    pillow = FrameFolderDecoder().get_frames(folder, INDICES)
    assert [frame_number(f) for f in dali] == INDICES
    assert np.abs(dali.astype(int) - pillow.astype(int)).max() <= 1  # both libjpeg(-turbo)
    assert decoder.num_frames(folder) == 24 and not decoder.fallbacks


def test_undecodable_jpeg_payload_falls_back_to_its_own_files(numbered, tmp_path):
    """A folder named by another template (a frame_list record's own): the fallback reads the payload's
    files, not the decoder's default template."""
    folder = tmp_path / "img_frames"
    folder.mkdir()
    for t in range(24):
        shutil.copy(numbered / "clip_frames" / f"{t + 1:05d}.jpg", folder / f"img_{t + 1:05d}.jpg")
    decoder = build_decoder("dali", frames=True).with_template("img_{:05d}.jpg")
    payload = decoder.prepare(str(folder), lambda total: [7, 3, 7])
    payload.data = [np.frombuffer(b"not a jpeg" * 8, dtype=np.uint8) for _ in payload.data]
    with pytest.warns(RuntimeWarning, match="DALI could not decode"):
        (frames,) = decoder.decode([payload], "cpu")
    assert [frame_number(f) for f in frames.numpy()] == [7, 3, 7]
    assert torch.equal(frames, torch.from_numpy(FrameFolderDecoder("img_{:05d}.jpg").get_frames(str(folder),
                                                                                                [7, 3, 7])))


def test_payload_carries_bytes_indices_and_header_size(numbered):
    decoder = build_decoder("dali")
    payload = decoder.prepare(str(numbered / "clip.webm"), lambda total: np.arange(0, total, 6))
    assert payload.kind == "video" and payload.codec == "vp9" and payload.shape == (4, 32, 48, 3)
    assert payload.indices.tolist() == [0, 6, 12, 18]
    assert payload.data.tobytes() == (numbered / "clip.webm").read_bytes()
    images = build_decoder("dali", frames=True).prepare(str(numbered / "clip_frames"), lambda total: [5, 2, 5])
    assert len(images.data) == 2 and images.order.tolist() == [1, 0, 1] and images.shape == (3, 32, 48, 3)


def test_h264_on_the_cpu_backend_is_a_one_line_config_error(numbered):
    with pytest.raises(ConfigError, match=r"clip\.mp4: h264 video; data.decoder 'dali' on a CPU decodes only "
                                          r"vp8/vp9/mjpeg .* needs a CUDA GPU") as caught:
        build_decoder("dali").get_frames(str(numbered / "clip.mp4"), [0, 1])
    assert "\n" not in str(caught.value)
    # a ConfigError is not bad data: the dataset raises it instead of substituting another video
    shutil.copy(numbered / "clip.mp4", numbered / "h264.mp4")
    (numbered / "list.txt").write_text("h264.mp4 0\nclip.webm 0\n")
    ds = build_dataset("video_list", root=numbered, annotations=numbered / "list.txt", decoder="dali", size=16,
                       num_frames=4)
    ds.set_transforms_on("device")
    ds.defer_decoding("cpu")
    with pytest.raises(ConfigError, match="h264"):
        ds[0]


def test_missing_dali_names_the_extra(monkeypatch, synthetic):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # `import nvidia.dali` now raises ImportError
    with pytest.raises(ConfigError) as caught:
        _dataset(synthetic["webm"], "webm", "dali")
    message = str(caught.value)
    assert "pip install 'videoattn[dali]'" in message and "data.decoder" in message and "\n" not in message


def test_cache_decoded_and_cpu_transforms_are_refused_with_dali(synthetic):
    with pytest.raises(ConfigError, match="cache_decoded.*dali"):
        _dataset(synthetic["webm"], "webm", "dali", cache_decoded=True)
    from videoattn.data.device_transforms import resolve_transforms_on

    ds = _dataset(synthetic["webm"], "webm", "dali")
    assert resolve_transforms_on("auto", "cpu", ds) == "device"
    with pytest.raises(ConfigError, match="'cpu' does not go with data.decoder 'dali'"):
        resolve_transforms_on("cpu", "cpu", ds)
    with pytest.raises(ConfigError, match="transforms_on"):  # defer_decoding checks it too
        ds.defer_decoding("cpu")


@pytest.mark.parametrize("fmt", ["webm", "frames"])
def test_batches_equal_the_cpu_decoders_batches(synthetic, fmt):
    """Same seed: same items, indices, labels (flip map), crop boxes and flips; frames differ by the
    YUV -> RGB conversion only (JPEG: within 1); the device transforms then give nearly the same clips."""
    cpu = _dataset(synthetic[fmt], fmt, "auto")
    cpu.set_transforms_on("device")
    dali = _dataset(synthetic[fmt], fmt, "dali")
    dali.set_transforms_on("device")
    assert dali.defer_decoding("cpu") and dali.metadata()["decoder"] == "dali"
    assert dali.metadata()["decoder_version"].startswith("DALI ")
    flips = 0
    for expected, got, clips in matched_batches(cpu, dali):
        difference = (got["video"].int() - expected["video"].int()).abs()
        if fmt == "frames":
            assert int(difference.max()) <= 1
        else:
            assert float(difference.float().mean()) < MEAN_TOLERANCE
        assert (clips[0] - clips[1]).abs().mean() < 0.05  # normalised units (1/255 ~ 0.017)
        flips += int(got["flip"].sum())
    assert flips > 0 and not dali.decoder.fallbacks


def test_payloads_through_workers_equal_the_main_process(synthetic):
    """Payloads pickled through a worker decode to the same batch as without workers (epoch tags too)."""
    ds = _dataset(synthetic["webm"], "webm", "dali")
    ds.set_transforms_on("device")
    ds.defer_decoding("cpu")
    assert_workers_decode_as_main(ds)


@pytest.fixture
def flaky(synthetic, tmp_path, monkeypatch):
    """A copy of the WebM dataset where video 0 is undecodable by DALI only ("bad") and video 1 by DALI
    and PyAV ("dead"): its payload is garbage, and so is the file by the time the main process
    falls back to it. The workers' checks (header, frame count) pass for both, as for a file whose
    damage only shows when its frames are decoded."""
    root = tmp_path / "flaky"
    shutil.copytree(synthetic["webm"], root)
    entries = json.loads((root / "train.json").read_text())
    bad, dead = entries[0]["id"], entries[1]["id"]
    prepare = DaliDecoder.prepare

    def damaged(self, path, indices_fn, device=None):
        payload = prepare(self, path, indices_fn, device)
        if path.endswith((f"/{bad}.webm", f"/{dead}.webm")):
            payload.data = np.frombuffer(b"not a video " * 64, dtype=np.uint8)
        if path.endswith(f"/{dead}.webm"):
            with open(path, "r+b") as handle:  # damaged after the worker read it
                handle.seek(200)
                handle.write(b"\0" * 4096)
        return payload

    monkeypatch.setattr(DaliDecoder, "prepare", damaged)
    return root, bad, dead


def test_training_falls_back_to_pyav_then_substitutes(flaky):
    root, bad, dead = flaky
    ds = _dataset(root, "webm", "dali")
    ds.set_transforms_on("device")
    ds.defer_decoding("cpu")
    reference = _dataset(root, "webm", "pyav")
    reference.set_transforms_on("device")
    names = [r.path.rsplit("/", 1)[-1] for r in ds.records]
    with pytest.warns(RuntimeWarning, match="DALI could not decode .*; decoding it .* with the CPU decoder"):
        batch = ds.decode_batch(build_loader(ds, 1, shuffle=False, num_workers=0).collate_fn(
            [ds[(i, 0)] for i in (0, 1, 2)]), "cpu")
    # video 0: DALI failed, PyAV decoded the same indices; nothing is reported as bad data
    assert names[0] == f"{bad}.webm" and batch["index"][0] == 0
    expected = reference[(0, 0)]
    assert torch.equal(batch["video"][0], expected["video"]) and torch.equal(batch["crop_box"][0],
                                                                              expected["crop_box"])
    assert any(path.endswith(f"{bad}.webm") for path, _ in ds.decoder.fallbacks)
    # video 1: both failed: recorded and substituted by the seeded sequence of item 1
    assert batch["index"][1] != 1 and len(batch["skipped"]) == 1
    assert batch["skipped"][0]["path"].endswith(f"{dead}.webm") and "DALI:" in batch["skipped"][0]["reason"]
    substitute = ds._produce(1, 0, 1, defer=False)
    assert int(batch["index"][1]) == substitute["index"] and torch.equal(batch["video"][1], substitute["video"])
    assert batch["video"].shape[0] == batch["label"].shape[0] == 3


def test_evaluation_drops_what_neither_decoder_reads(flaky):
    root, bad, dead = flaky
    val = _dataset(root, "webm", "dali", split="val")
    # the flaky videos are training entries; evaluate the training list with the evaluation transforms
    val.records = _dataset(root, "webm", "dali").records
    val.defer_decoding("cpu")
    with pytest.warns(RuntimeWarning, match="DALI could not decode .*; decoding it .* with the CPU decoder"):
        batch = val.decode_batch(build_loader(val, 1, shuffle=False, num_workers=0).collate_fn(
            [val[(i, 0)] for i in (0, 1, 2)]), "cpu")
    assert batch["index"].tolist() == [0, 2] and batch["video"].shape[:2] == (2, 3)
    assert len(batch["dropped"]) == 1 and batch["dropped"][0]["index"] == 1
    assert batch["dropped"][0]["path"].endswith(f"{dead}.webm")


def _train_config(root, fmt, work_dir, **train):
    return train_config(root, fmt, "dali", work_dir, **train)


@pytest.mark.parametrize("fmt", ["webm", "frames"])
def test_training_and_validation_run_with_dali(synthetic, tmp_path, fmt):
    from videoattn.engine import train

    root = synthetic[fmt]
    result = train(_train_config(root, fmt, tmp_path / "run"))
    assert result.global_step >= 2 and result.summary["loader"]["transforms_on"] == "device"
    assert result.summary["num_skipped"] == 0
    final = result.summary["final"]
    validation = _dataset(root, fmt, "pyav" if fmt == "webm" else "frames", split="val")
    assert final["val_videos_evaluated"] == len(validation) > 0 and np.isfinite(final["train_loss"])
    metadata = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert metadata["train_data"]["decoder"] == "dali"


def test_stop_and_resume_with_dali_equals_uninterrupted(synthetic, tmp_path):
    """Stopped mid-epoch and resumed (payloads through a loader worker), the same weights as one run."""
    from videoattn.engine import train
    from videoattn.engine.checkpoint import load_checkpoint

    root = synthetic["webm"]
    common = {"epochs": 2, "val_interval": 0}
    full = train(_train_config(root, "webm", tmp_path / "full", **common))
    train(_train_config(root, "webm", tmp_path / "split", **common, max_steps=2))
    resumed = train(_train_config(root, "webm", tmp_path / "split", **common), resume=True)
    assert resumed.global_step == full.global_step > 2
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)

def test_threads_share_a_decoder(numbered):
    """``videoattn data check`` reads with a thread pool: each thread gets its own DALI pipeline (one
    shared pipeline's feed/run interleaved across threads and hung)."""
    from concurrent.futures import ThreadPoolExecutor

    decoder = build_decoder("dali")
    path = str(numbered / "clip.webm")
    with ThreadPoolExecutor(2) as pool:
        results = [pool.submit(decoder.get_frames, path, [i, 23 - i]) for i in range(8)]
        numbers = [[frame_number(f) for f in future.result(timeout=30)] for future in results]
    assert numbers == [[i, 23 - i] for i in range(8)]
