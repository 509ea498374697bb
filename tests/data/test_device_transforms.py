"""``data.transforms_on: device``: worker items of uint8 frames + crop box + flip, transformed batched.

On a CPU device the batched path uses the CPU path's crop and resize operations, so its clips must
equal the CPU path's bit for bit (no tolerance), for every crop recipe, with frames of several sizes
in one batch, with flips (and the flip label map) and with bad entries substituted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoattn.data.annotations import VideoRecord
from videoattn.data.dataset import VideoDataset
from videoattn.data.device_transforms import resolve_transforms_on, stack_frames, transform_batch_on_device
from videoattn.data.loader import build_loader, collate_samples
from videoattn.data.transforms import build_clip_transform
from videoattn.errors import ConfigError, DataError

CLASSES = ["moving something from left to right", "moving something from right to left", "holding something"]
SHAPES = [(40, 56), (48, 48), (36, 64), (52, 44)]  # decoded (height, width) differ between videos


class _ArrayDecoder:
    """Frames made from the path: each video has its own size and content; 'bad' paths fail."""

    name = "pyav"

    def read(self, path, indices_for):
        if "bad" in path:
            raise DataError(f"{path}: corrupt video")
        number = int(path.rsplit("_", 1)[1].split(".")[0])
        height, width = SHAPES[number % len(SHAPES)]
        total = 10 + number % 3
        rng = np.random.default_rng(number)
        video = rng.integers(0, 256, size=(total, height, width, 3), dtype=np.uint8)
        return video[indices_for(total)]


def _dataset(tmp_path, crop="multiscale", seed=3, flip="swap_left_right", color=None, bad=True):
    records = []
    for i in range(12):
        name = f"bad_{i}.webm" if bad and i in (4, 9) else f"video_{i}.webm"
        (tmp_path / name).write_bytes(b"x")
        records.append(VideoRecord(path=str(tmp_path / name), label=i % 3))
    transform = build_clip_transform("train", size=24, scale_size=32, crop=crop, color=color)
    return VideoDataset(records, CLASSES, decoder=_ArrayDecoder(), transform=transform, split="train",
                        num_frames=4, flip=flip, seed=seed)


@pytest.mark.parametrize("crop", ["multiscale", "jitter", "random_resized"])
def test_device_path_equals_cpu_path_bit_for_bit(tmp_path, crop):
    cpu, device = _dataset(tmp_path, crop), _dataset(tmp_path, crop)
    device.set_transforms_on("device")
    flipped = 0
    for epoch in (0, 1):
        keys = [(i, epoch) for i in range(12)]
        expected = collate_samples([cpu[k] for k in keys])
        batch = collate_samples([device[k] for k in keys])
        assert batch["video"].dtype == torch.uint8 and batch["video"].shape[:2] == (12, 4)
        assert batch["video"].shape[2:] == (52, 64, 3)  # padded to the largest decoded frames
        assert torch.equal(batch["label"], expected["label"]) and torch.equal(batch["index"], expected["index"])
        assert batch["skipped"] == expected["skipped"] and len(batch["skipped"]) >= 2  # substitutions agree
        clips = transform_batch_on_device(batch["video"], batch["crop_box"], batch["flip"], device.transform)
        assert clips.dtype == torch.float32 and clips.shape == expected["video"].shape == (12, 3, 4, 24, 24)
        assert torch.equal(clips, expected["video"])
        flipped += int(batch["flip"].sum())
    assert flipped > 0  # the mirror was exercised


def test_flip_label_map_applied_on_device_path(tmp_path):
    device = _dataset(tmp_path, bad=False)
    device.set_transforms_on("device")
    seen = set()
    for epoch in range(6):
        for i in range(12):
            sample = device[(i, epoch)]
            original = i % 3
            if sample["flip"]:
                # swap_left_right: "left to right" <-> "right to left"; "holding" keeps its label
                assert sample["label"] == {0: 1, 1: 0, 2: 2}[original]
                seen.add(original)
            else:
                assert sample["label"] == original
    assert {0, 1} <= seen


def test_skip_left_right_never_flips_directional_classes(tmp_path):
    device = _dataset(tmp_path, flip="skip_left_right", bad=False)
    device.set_transforms_on("device")
    for epoch in range(4):
        for i in range(12):
            sample = device[(i, epoch)]
            assert not (sample["flip"] and i % 3 in (0, 1))


def test_same_seed_same_crops_other_seed_other_crops(tmp_path):
    def boxes(seed):
        data = _dataset(tmp_path, seed=seed, bad=False)
        data.set_transforms_on("device")
        return [(tuple(data[(i, 0)]["crop_box"].tolist()), data[(i, 0)]["flip"]) for i in range(12)]

    assert boxes(5) == boxes(5)
    assert boxes(5) != boxes(6)


def test_loader_with_workers_gives_the_same_batches(tmp_path):
    device = _dataset(tmp_path)
    device.set_transforms_on("device")
    batches = []
    for workers in (0, 2):
        loader = build_loader(device, batch_size=4, shuffle=True, num_workers=workers, seed=1)
        batches.append(list(loader))
    for a, b in zip(*batches, strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["crop_box"], b["crop_box"])
        assert torch.equal(a["flip"], b["flip"]) and torch.equal(a["label"], b["label"])
    assert {b["load"][0] for b in batches[1]} == {0, 1}  # items carry the worker that produced them
    assert all(b["load"][0] == -1 and b["load"][2] == 4 and b["load"][1] > 0 for b in batches[0])
    assert all(b["load"][3] > 1024 for b in batches[0] + batches[1])  # peak resident KiB of the producer


def test_resolve_transforms_on(tmp_path):
    data = _dataset(tmp_path)
    assert resolve_transforms_on("auto", "cpu", data) == "cpu"
    assert resolve_transforms_on("auto", torch.device("cuda"), data) == "device"
    assert resolve_transforms_on("device", "cpu", data) == "device"
    assert resolve_transforms_on("cpu", torch.device("cuda"), data) == "cpu"
    jitter = _dataset(tmp_path, color=(0.4, 0.4, 0.4, 0.0))
    assert resolve_transforms_on("auto", torch.device("cuda"), jitter) == "cpu"
    with pytest.raises(ConfigError, match="data.transforms_on.*colour jitter"):
        resolve_transforms_on("device", "cpu", jitter)
    with pytest.raises(ConfigError, match="data.transforms_on.*'gpu'"):
        resolve_transforms_on("gpu", "cpu", data)
    with pytest.raises(ConfigError, match="colour jitter"):
        jitter.set_transforms_on("device")


def test_stack_frames_pads_and_refuses_mixed_lengths():
    a, b = torch.ones(2, 3, 5, 3, dtype=torch.uint8), torch.full((2, 4, 2, 3), 7, dtype=torch.uint8)
    out = stack_frames([a, b])
    assert out.shape == (2, 2, 4, 5, 3)
    assert torch.equal(out[0, :, :3, :5], a) and int(out[0, :, 3:].sum()) == 0
    assert torch.equal(out[1, :, :4, :2], b) and int(out[1, :, :, 2:].sum()) == 0
    with pytest.raises(ConfigError, match="different numbers of frames"):
        stack_frames([a, torch.ones(3, 3, 5, 3, dtype=torch.uint8)])
