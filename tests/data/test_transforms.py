"""Transform geometry: crop boxes, one spatial op per clip, flips, normalisation, view counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videoattn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_clip_transform,
    center_crop_box,
    color_jitter,
    crop_and_resize,
    five_crop_boxes,
    multiscale_crop_box,
    resized_shape,
    three_crop_boxes,
)


def test_resized_shape():
    assert resized_shape(240, 320, 256) == (256, 341)
    assert resized_shape(320, 240, 256) == (341, 256)
    assert resized_shape(100, 200, (240, 320)) == (240, 320)


def test_multiscale_crop_sizes_and_positions():
    rng = np.random.default_rng(0)
    allowed = {int(240 * s) for s in (1, 0.875, 0.75, 0.66)} | {224}
    seen_sizes = set()
    for _ in range(300):
        box = multiscale_crop_box(240, 320, 224, rng)
        assert box.height in allowed and box.width in allowed
        assert box.top >= 0 and box.top + box.height <= 240
        assert box.left >= 0 and box.left + box.width <= 320
        seen_sizes.add((box.height, box.width))
    # max_distort=1: scale indices of height and width differ by at most one step.
    assert (240, 158) not in seen_sizes and (240, 210) in seen_sizes and (158, 180) in seen_sizes


def test_fixed_crops():
    box = center_crop_box(256, 341, 224)
    assert (box.top, box.left) == (16, 58)
    lefts = [b.left for b in three_crop_boxes(256, 341, 256)]
    assert lefts == [0, 42, 85]
    tops = [b.top for b in three_crop_boxes(341, 256, 256)]
    assert tops == [0, 42, 85]
    corners = five_crop_boxes(100, 120, 50)
    assert [(b.top, b.left) for b in corners] == [(0, 0), (0, 70), (50, 0), (50, 70), (25, 35)]


def test_crop_and_resize_maps_the_box():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, 10:20, 30:40] = 255
    from videoattn.data.transforms import Box

    out = crop_and_resize(frames, Box(10, 30, 10, 10), (5, 5))
    assert out.shape == (2, 3, 5, 5) and torch.all(out == 255)


def test_train_transform_same_crop_for_all_frames_and_flip():
    rng_frames = np.random.default_rng(0)
    frame = rng_frames.integers(0, 255, size=(1, 48, 64, 3), dtype=np.uint8)
    frames = np.repeat(frame, 4, axis=0)
    transform = build_clip_transform("train", size=32, scale_size=(40, 56))
    clip = transform(frames, np.random.default_rng(5), flip=False)
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    for t in range(1, 4):  # identical frames in, identical frames out: one crop for the whole clip
        torch.testing.assert_close(clip[:, t], clip[:, 0])
    flipped = transform(frames, np.random.default_rng(5), flip=True)
    torch.testing.assert_close(flipped, clip.flip(-1))


def test_eval_views_and_normalisation():
    frames = np.full((3, 48, 64, 3), 255, np.uint8)
    frames[..., 1] = 0
    views = build_clip_transform("test", size=32, scale_size=32, num_crops=3)(frames)
    assert len(views) == 3 and all(v.shape == (3, 3, 32, 32) for v in views)
    expected = [(1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], (0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]]
    torch.testing.assert_close(views[0][0].mean(), torch.tensor(expected[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(views[0][1].mean(), torch.tensor(expected[1]), atol=1e-4, rtol=0)
    ten = build_clip_transform("test", size=24, scale_size=32, num_crops=10)(frames)
    assert len(ten) == 10
    torch.testing.assert_close(ten[5], ten[0].flip(-1))
    with pytest.raises(ValueError, match="num_crops"):
        build_clip_transform("test", num_crops=4)


def test_color_jitter_keeps_range_and_changes_values():
    clip = torch.rand(4, 3, 8, 8) * 255
    out = color_jitter(clip, np.random.default_rng(0), 0.4, 0.4, 0.4, 0.1)
    assert out.shape == clip.shape and out.min() >= 0 and out.max() <= 255
    assert not torch.allclose(out, clip)
