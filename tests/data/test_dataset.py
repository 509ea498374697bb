"""Dataset + loader: outputs, views, flips with label maps, and determinism across workers/epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoattn.data import build_dataset, build_loader, collate_samples, flip_label_map, generate_synthetic
from videoattn.data.sampler import ResumableSampler


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth"), num_videos=24, frames=16, size=32, seed=3)


def ssv2(synth, split="train", annotations="train.json", **options):
    options.setdefault("size", 24)
    options.setdefault("num_frames", 4)
    return build_dataset("ssv2", root=synth / "videos", annotations=synth / annotations,
                         labels=synth / "labels.json", split=split, **options)


def test_train_val_test_outputs(synth):
    train = ssv2(synth)
    assert len(train) == 16 and len(train.classes) == 8 and train.decoder_backend == "pyav"
    sample = train[3]
    assert sample["video"].shape == (3, 4, 24, 24) and sample["video"].dtype == torch.float32
    assert sample["index"] == 3 and sample["skipped"] == [] and 0 <= sample["label"] < 8
    val = ssv2(synth, "val", "validation.json", num_clips=4, num_crops=3)
    assert val[0]["video"].shape == (3, 4, 24, 24)  # val is one centre view whatever the test settings
    test = ssv2(synth, "test", "validation.json", num_clips=2, num_crops=3, scale_size=24)
    assert test[0]["video"].shape == (6, 3, 4, 24, 24)
    torch.testing.assert_close(test[0]["video"], test[0]["video"])  # deterministic
    dense = ssv2(synth, "test", "validation.json", sampling="dense", frame_interval=2, num_clips=2)
    assert dense[1]["video"].shape == (2, 3, 4, 24, 24)
    meta = train.metadata()
    assert meta["decoder"] == "pyav" and meta["decoder_version"].startswith("PyAV")


def test_ssv1_frame_folders(tmp_path):
    out = generate_synthetic(tmp_path, num_videos=16, frames=8, size=32, format="frames")
    ds = build_dataset("ssv1", root=out / "videos", annotations=out / "something-something-v1-train.csv",
                       labels=out / "something-something-v1-labels.csv", size=24, num_frames=4)
    assert ds.decoder_backend == "frames" and len(ds) == 8
    assert ds[0]["video"].shape == (3, 4, 24, 24)


def test_flip_label_maps():
    classes = ["Pushing something from left to right", "Pushing something from right to left",
               "Turning left", "Holding something"]
    assert flip_label_map(classes, "standard") == [0, 1, 2, 3]
    assert flip_label_map(classes, "skip_left_right") == [None, None, None, 3]
    assert flip_label_map(classes, "swap_left_right") == [1, 0, None, 3]
    assert flip_label_map(classes, "none") == [None] * 4


def test_flip_swaps_label_and_mirrors_video(synth):
    always = ssv2(synth, flip="swap_left_right", flip_prob=1.0)
    never = ssv2(synth, flip="swap_left_right", flip_prob=0.0)
    index = next(i for i, r in enumerate(always.records) if r.label == 0)  # "from left to right"
    flipped, plain = always[index], never[index]
    assert plain["label"] == 0 and flipped["label"] == 1
    torch.testing.assert_close(flipped["video"], plain["video"].flip(-1))


def test_epoch_seed_index_determinism(synth):
    ds = ssv2(synth)
    first = ds[5]["video"]
    torch.testing.assert_close(ssv2(synth)[5]["video"], first, rtol=0, atol=0)
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["video"], first)
    torch.testing.assert_close(ds[(5, 0)]["video"], first, rtol=0, atol=0)
    assert not torch.equal(ssv2(synth, seed=1)[5]["video"], first)


def _epochs(loader, dataset, epochs):
    out = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        out.append([(b["index"].clone(), b["video"].clone()) for b in loader])
    return out


def test_loader_bit_identical_across_workers_and_resume(synth):
    reference_ds = ssv2(synth)
    reference = _epochs(build_loader(reference_ds, 4, num_workers=0, seed=7), reference_ds, [0, 1])
    workers_ds = ssv2(synth)
    with_workers = _epochs(build_loader(workers_ds, 4, num_workers=2, persistent_workers=True, seed=7),
                           workers_ds, [0, 1])
    resumed_ds = ssv2(synth)
    resumed = _epochs(build_loader(resumed_ds, 4, num_workers=1, seed=7), resumed_ds, [1])
    for got in (with_workers, [reference[0], resumed[0]]):
        for epoch_ref, epoch_got in zip(reference, got):
            if epoch_got is resumed[0]:
                epoch_ref = reference[1]
            assert len(epoch_ref) == len(epoch_got) == 4
            for (ref_index, ref_video), (got_index, got_video) in zip(epoch_ref, epoch_got):
                assert torch.equal(ref_index, got_index) and torch.equal(ref_video, got_video)
    assert not torch.equal(reference[0][0][0], reference[1][0][0])  # shuffling changes with the epoch


def test_collate_and_distributed_shards(synth):
    ds = ssv2(synth)
    batch = collate_samples([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 4, 24, 24) and batch["label"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1] and batch["skipped"] == []
    shards = [list(ResumableSampler(10, num_replicas=3, rank=r, seed=1, drop_last=False)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3] and sorted(sum(shards, [])) == list(range(10))
    loader = build_loader(ds, 2, distributed=True, num_replicas=2, rank=1, num_workers=0, seed=1)
    assert len(loader) == 4
    sampler = np.arange(4)
    ordered = build_loader(ds, 2, sampler=sampler, num_workers=0)
    assert [b["index"].tolist() for b in ordered] == [[0, 1], [2, 3]]
