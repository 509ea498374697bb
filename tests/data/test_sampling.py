"""Sampler index properties: ranges, coverage, determinism, test views."""

from __future__ import annotations

import numpy as np
import pytest

from videoattn.data.sampling import dense_indices, sample_views, tsn_indices
from videoattn.errors import ConfigError


@pytest.mark.parametrize("num_total", [1, 5, 8, 9, 37, 300])
def test_tsn_train_one_frame_per_segment(num_total):
    segments = 8
    rng = np.random.default_rng(0)
    for _ in range(50):
        indices = tsn_indices(num_total, segments, rng)
        assert indices.shape == (segments,) and indices.dtype == np.int64
        assert indices.min() >= 0 and indices.max() < num_total
        assert np.all(np.diff(indices) >= 0)
        if num_total >= segments:
            bounds = np.floor(np.arange(segments + 1) * num_total / segments).astype(int)
            assert np.all((indices >= bounds[:-1]) & (indices < bounds[1:]))


def test_tsn_train_covers_every_frame_and_is_deterministic():
    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(400):
        seen.update(tsn_indices(40, 8, rng).tolist())
    assert seen == set(range(40))
    first = tsn_indices(40, 8, np.random.default_rng([3, 1, 7]))
    again = tsn_indices(40, 8, np.random.default_rng([3, 1, 7]))
    np.testing.assert_array_equal(first, again)


def test_tsn_test_centres_and_multi_clip_offsets():
    np.testing.assert_array_equal(tsn_indices(80, 8), np.arange(8) * 10 + 5)
    views = sample_views(80, 8, "tsn", num_clips=2)  # TSM "twice sample"
    np.testing.assert_array_equal(views[0], np.arange(8) * 10 + 2)
    np.testing.assert_array_equal(views[1], np.arange(8) * 10 + 7)
    assert sample_views(80, 8, "tsn", num_clips=10).shape == (10, 8)


def test_dense_clips():
    rng = np.random.default_rng(0)
    for _ in range(50):
        clip = dense_indices(100, 8, 8, rng)[0]
        np.testing.assert_array_equal(np.diff(clip), 8)
        assert clip[0] >= 0 and clip[-1] < 100
    centre = dense_indices(100, 8, 8)[0]
    assert centre[0] == (100 - 57) // 2
    views = dense_indices(300, 8, 8, num_clips=10)
    assert views.shape == (10, 8) and np.all(np.diff(views[:, 0]) > 0) and views.max() < 300
    short = dense_indices(10, 8, 4)  # shorter than the span: loops
    assert short.max() < 10 and short[0, 3] == 12 % 10


def test_bad_arguments():
    with pytest.raises(ConfigError, match="num_total"):
        tsn_indices(0, 8)
    with pytest.raises(ConfigError, match="sampling"):
        sample_views(10, 8, "uniform")
