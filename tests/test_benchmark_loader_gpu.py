"""``benchmarks/loader_gpu.py`` end to end on CPU (``--device cpu --tiny``), and the SSv2-resolution
``videoattn data synth`` it generates its data with."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from videoattn.cli import main
from videoattn.data import build_dataset
from videoattn.data.synthetic import generate_synthetic, render_video
from videoattn.errors import ConfigError


@pytest.mark.parametrize(("kind", "size", "digest"), [("horizontal", 32, "c1bb91b4bbd443c7"),
                                                      ("rotate", 64, "c73ce72c372ce367")])
def test_square_frames_render_as_before(kind, size, digest):
    """Pixels pinned from the renderer before non-square frames existed (generator version 2)."""
    frames, _ = render_video(kind, np.random.default_rng([3, 7]), 8, size)
    assert hashlib.sha256(frames.tobytes()).hexdigest()[:16] == digest


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_non_square_frames_move_along_their_own_axis(kind):
    frames, _ = render_video(kind, np.random.default_rng(4), 12, 24, 40)
    assert frames.shape == (12, 24, 40, 3) and frames.dtype == np.uint8
    # the object is where first and last frames differ most: its centre travels along the named axis
    moved = np.abs(frames[-1].astype(int) - frames[0].astype(int)).sum(-1) > 60
    rows, cols = np.nonzero(moved)
    spread_x, spread_y = cols.max() - cols.min(), rows.max() - rows.min()
    assert (spread_x / 40 > spread_y / 24) == (kind == "horizontal")


def test_synth_cli_writes_ssv2_resolution_videos(tmp_path, capsys):
    out = tmp_path / "ssv2like"
    assert main(["data", "synth", "--out", str(out), "--num-videos", "16", "--frames", "12", "--size", "24",
                 "--width", "40", "--format", "mp4"]) == 0
    assert "24x40 px" in capsys.readouterr().out
    settings = json.loads((out / "synthetic.json").read_text())
    assert (settings["size"], settings["width"], settings["frames"]) == (24, 40, 12)
    data = build_dataset("ssv2", root=out / "videos", annotations=out / "train.json", labels=out / "labels.json",
                         video_extension=".mp4", split="train", size=16, num_frames=4)
    data.set_transforms_on("device")  # items are the decoded frames: their size is the video's
    assert tuple(data[0]["video"].shape) == (4, 24, 40, 3)


def test_synth_refuses_odd_width(tmp_path):
    with pytest.raises(ConfigError, match="width must be an even number >= 8.*width=33"):
        generate_synthetic(tmp_path / "odd", num_videos=16, size=24, width=33)
    assert not (tmp_path / "odd").exists()  # refused before anything is written
