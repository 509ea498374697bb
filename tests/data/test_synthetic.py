"""The synthetic dataset: SSv2 layout, determinism, and the time-reversal property on decoded content."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videoattn.cli import main as cli_main
from videoattn.data import build_dataset, generate_synthetic, synthetic_classes
from videoattn.data.decoders import PyAVDecoder
from videoattn.data.synthetic import _COLOUR_NAMES, PAIRS, render_video
from videoattn.errors import ConfigError


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth"), num_videos=320, frames=16, size=32, seed=11,
                              num_pairs=4)


def motion_statistics(frames: np.ndarray, colour_name: str) -> dict[str, np.ndarray]:
    """Per-frame centroid x/y and area of the pixels showing the object's colour (named in the annotation).

    Pixels of that colour in every frame (a background that happens to match) are left out.
    """
    colour = np.array(_COLOUR_NAMES[colour_name], dtype=np.float32)
    near = np.abs(frames.astype(np.float32) - colour).mean(-1) < 45  # (T, H, W)
    mask = near & ~near.all(0)
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
    area = mask.sum((1, 2)).astype(np.float32)
    safe = np.maximum(area, 1)
    return {"x": (mask * xs).sum((1, 2)) / safe, "y": (mask * ys).sum((1, 2)) / safe, "area": area}


def slope(series: np.ndarray) -> float:
    t = np.arange(len(series)) - (len(series) - 1) / 2
    return float((t * (series - series.mean())).sum() / (t * t).sum())


# The statistic whose time direction tells each pair apart: positive for the first class of the pair.
PAIR_STATISTIC = {0: "x", 1: "y", 2: "area", 3: "area"}


def test_layout_and_labels(generated):
    labels = json.loads((generated / "labels.json").read_text())
    assert list(labels) == [name for name, _ in synthetic_classes(4)] and len(labels) == 8
    train = json.loads((generated / "train.json").read_text())
    val = json.loads((generated / "validation.json").read_text())
    assert len(train) + len(val) == 320 and len(val) == 80
    assert set(train[0]) == {"id", "label", "template", "placeholders"}
    assert all((generated / "videos" / f"{e['id']}.webm").stat().st_size > 0 for e in train + val)
    ds = build_dataset("ssv2", root=generated / "videos", annotations=generated / "validation.json",
                       labels=generated / "labels.json", split="val", size=32, num_frames=8)
    counts = np.bincount([r.label for r in ds.records], minlength=8)
    assert counts.tolist() == [10] * 8


def test_reversed_class_a_has_class_b_distribution(generated):
    decoder = PyAVDecoder()
    entries = [e for split in ("train", "validation") for e in json.loads((generated / f"{split}.json").read_text())]
    names = [name for name, _ in synthetic_classes(4)]
    stats: dict[int, list[dict]] = {label: [] for label in range(8)}
    for entry in entries:
        label = names.index(entry["template"].replace("[", "").replace("]", ""))
        frames = decoder.get_frames(str(generated / "videos" / f"{entry['id']}.webm"), range(16))
        stats[label].append(motion_statistics(frames, entry["placeholders"][0].split()[0]))
    for pair, key in PAIR_STATISTIC.items():
        forward = np.array([slope(s[key]) for s in stats[2 * pair]])
        backward = np.array([slope(s[key]) for s in stats[2 * pair + 1]])
        reversed_forward = np.array([slope(s[key][::-1]) for s in stats[2 * pair]])
        # The event is visible: A and B are separated by the direction of their statistic ...
        assert (forward > 0).mean() >= 0.9 and (backward < 0).mean() >= 0.9, key
        # ... and A played backwards looks like B (means within 3 standard errors), not like A.
        assert abs(reversed_forward.mean() - backward.mean()) < 3 * standard_error(reversed_forward, backward), key
        assert abs(reversed_forward.mean() - forward.mean()) > 10 * standard_error(reversed_forward, forward), key
        # Order-blind view: the time-averaged statistic has the same distribution in A and B.
        forward_avg = np.array([s[key].mean() for s in stats[2 * pair]])
        backward_avg = np.array([s[key].mean() for s in stats[2 * pair + 1]])
        assert abs(forward_avg.mean() - backward_avg.mean()) < 3 * standard_error(forward_avg, backward_avg), key


def standard_error(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the difference of the two sample means."""
    return float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))) + 1e-9


def test_class_b_video_is_a_rendered_class_a_event_reversed(generated):
    """Exactly how B is made: the forward event rendered from the video's own seed, played backwards."""
    decoder = PyAVDecoder()
    for video_id in (2, 4, 6, 8):  # labels 1, 3, 5, 7: the second class of each pair
        label = (video_id - 1) % 8
        forward, _ = render_video(PAIRS[label // 2].kind, np.random.default_rng([11, video_id - 1]), 16, 32)
        decoded = decoder.get_frames(str(generated / "videos" / f"{video_id}.webm"), range(16)).astype(np.float32)
        reversed_order = forward[::-1].astype(np.float32)
        changing = np.abs(reversed_order - forward).max(-1) > 50  # pixels where the two orders differ
        assert changing.sum() > 50
        error_reversed = np.abs(decoded - reversed_order).max(-1)[changing].mean()
        error_forward = np.abs(decoded - forward).max(-1)[changing].mean()
        assert error_reversed < 40 and error_forward > 4 * error_reversed, (video_id, error_reversed, error_forward)


def test_deterministic_given_seed(tmp_path):
    first = generate_synthetic(tmp_path / "a", num_videos=16, frames=8, size=16, seed=5)
    second = generate_synthetic(tmp_path / "b", num_videos=16, frames=8, size=16, seed=5, workers=2)
    other = generate_synthetic(tmp_path / "c", num_videos=16, frames=8, size=16, seed=6)
    assert (first / "train.json").read_text() == (second / "train.json").read_text()
    decoder = PyAVDecoder()
    a = decoder.get_frames(str(first / "videos" / "3.webm"), range(8))
    np.testing.assert_array_equal(a, decoder.get_frames(str(second / "videos" / "3.webm"), range(8)))
    assert not np.array_equal(a, decoder.get_frames(str(other / "videos" / "3.webm"), range(8)))


def test_formats_and_cli(tmp_path, capsys):
    code = cli_main(["data", "synth", "--out", str(tmp_path / "mp4"), "--num-videos", "16", "--frames", "8",
                     "--size", "16", "--format", "mp4"])
    assert code == 0 and "wrote 16 videos" in capsys.readouterr().out
    ds = build_dataset("ssv2", root=tmp_path / "mp4" / "videos", annotations=tmp_path / "mp4" / "train.json",
                       labels=tmp_path / "mp4" / "labels.json", video_extension=".mp4", size=16, num_frames=4)
    assert ds[0]["video"].shape == (3, 4, 16, 16)
    with pytest.raises(ConfigError, match="even"):
        generate_synthetic(tmp_path / "odd", num_videos=16, size=33)
    with pytest.raises(ConfigError, match="num_pairs"):
        generate_synthetic(tmp_path / "pairs", num_pairs=6)
