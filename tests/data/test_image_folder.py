"""Image folders (``<root>/<split>/<class>/<image>``) through the same dataset machinery as video."""

from __future__ import annotations

import numpy as np
import pytest

from videoattn.data import build_dataset, build_image_dataset
from videoattn.data.dataset import VideoDataset
from videoattn.errors import ConfigError, DataError


def write_image_folder(root, classes=("cat", "dog", "fox"), per_class=3, size=32, missing_in_val=("fox",),
                       corrupt=True):
    """PNG/JPEG images of a few classes (train: all, val: all but ``missing_in_val``), one corrupt JPEG."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            if split == "val" and name in missing_in_val:
                continue
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (size, size + 8, 3), dtype=np.uint8)
                pixels[..., label % 3] += 150  # the class shows in the colour: learnable in a few steps
                suffix = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"{split}_{i}{suffix}")
    if corrupt:
        (root / "train" / classes[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


def test_train_items_are_images_with_video_machinery(images):
    ds = build_dataset("image_folder", root=images, annotations="train", split="train", size=24)
    assert isinstance(ds, VideoDataset) and type(ds).__getitem__ is VideoDataset.__getitem__  # shared
    assert ds.classes == ["cat", "dog", "fox"] and len(ds) == 10  # 9 images + the corrupt one
    sample = ds[0]
    assert sample["image"].shape == (3, 24, 24) and "video" not in sample
    assert ds.flip == "standard" and ds.decoder_backend == "pillow"
    meta = ds.metadata()
    assert meta["format"] == "image_folder" and meta["decoder_version"].startswith("Pillow")
    assert ds.records[0].video_id.startswith("cat/")  # the image's path inside the split folder


def test_corrupt_image_is_reported_and_substituted_in_training(images):
    ds = build_dataset("image_folder", root=images, annotations="train", split="train", size=24)
    bad = next(i for i, r in enumerate(ds.records) if r.path.endswith("broken.jpg"))
    sample = ds[bad]
    assert sample["index"] != bad and sample["image"].shape == (3, 24, 24)
    assert sample["skipped"][0]["path"].endswith("broken.jpg")
    assert "unreadable image" in sample["skipped"][0]["reason"]
    with pytest.raises(DataError, match="broken.jpg: unreadable image"):
        build_dataset("image_folder", root=images, annotations="train", size=24, strict=True)[bad]


def test_val_classes_come_from_the_class_list_not_the_val_folder(images):
    val = build_dataset("image_folder", root=images, annotations="val", labels=images / "train", split="val",
                        size=24)
    assert val.classes == ["cat", "dog", "fox"]
    assert {r.label for r in val.records} == {0, 1}
    assert val[0]["image"].shape == (3, 24, 24)
    # A class file works too; a val image of a class outside the list is kept but marked bad.
    (images / "classes.txt").write_text("cat\nfox\n")
    listed = build_dataset("image_folder", root=images, annotations="val", labels=images / "classes.txt",
                           split="val", size=24)
    dogs = [r for r in listed.records if "/dog/" in r.path.replace("\\", "/")]
    assert dogs and all(r.label == -1 and "'dog'" in r.error for r in dogs)


def test_one_view_per_image_and_video_options_refused(images):
    with pytest.raises(ConfigError, match=r"one view per image.*num_crops=10"):
        build_dataset("image_folder", root=images, annotations="val", split="test", num_crops=10, size=24)
    with pytest.raises(ConfigError, match=r"image_folder.*video_extension"):
        build_dataset("image_folder", root=images, annotations="val", video_extension=".mp4")
    with pytest.raises(DataError, match=r"image folder .*nowhere.* does not exist"):
        build_dataset("image_folder", root=images, annotations="nowhere")


def test_as_video_gives_one_frame_clips_and_root_only_layout_still_works(images):
    clip = build_dataset("image_folder", root=images, annotations="val", split="val", size=24, as_video=True)
    assert clip[0]["video"].shape == (3, 1, 24, 24)
    legacy = build_image_dataset(images / "val", split="val", size=24)
    assert legacy.classes == ["cat", "dog"] and legacy[0]["image"].shape == (3, 24, 24)
