"""``videoattn data convert``: released annotations -> unified list + class file, missing media reported."""

from __future__ import annotations

import json

from videoattn.cli import main as cli_main
from videoattn.data import build_dataset, generate_synthetic


def test_convert_ssv2_videos_reports_missing(tmp_path, capsys):
    out = generate_synthetic(tmp_path / "synth", num_videos=16, frames=8, size=16)
    (out / "videos" / "1.webm").unlink()
    listing, classes, report = tmp_path / "train.txt", tmp_path / "classes.txt", tmp_path / "report.json"
    code = cli_main(["data", "convert", "--format", "ssv2", "--root", str(out / "videos"), "--annotations",
                     str(out / "train.json"), "--labels", str(out / "labels.json"), "--out", str(listing),
                     "--out-classes", str(classes), "--report", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 7 of 8 entries" in printed and "1 entries with missing media" in printed
    assert json.loads(report.read_text())["missing"][0]["path"].endswith("1.webm")
    assert classes.read_text().splitlines()[0] == "Moving something from left to right"
    first = listing.read_text().splitlines()[0].split()
    assert first[0].endswith(".webm") and not first[0].startswith("/")
    ds = build_dataset("video_list", root=out / "videos", annotations=listing, labels=classes, size=16,
                       num_frames=4)
    original = build_dataset("ssv2", root=out / "videos", annotations=out / "train.json",
                             labels=out / "labels.json", size=16, num_frames=4)
    assert ds.classes == original.classes and len(ds) == len(original) - 1
    assert ds.records[0].label == original.records[1].label


def test_convert_ssv1_frames_counts_frames(tmp_path, capsys):
    out = generate_synthetic(tmp_path / "synth", num_videos=16, frames=6, size=16, format="frames")
    listing = tmp_path / "ssv1.txt"
    code = cli_main(["data", "convert", "--format", "ssv1", "--root", str(out / "videos"), "--annotations",
                     str(out / "something-something-v1-validation.csv"), "--labels",
                     str(out / "something-something-v1-labels.csv"), "--out", str(listing)])
    assert code == 0 and "--frame-template '{:05d}.jpg'" in capsys.readouterr().out
    rows = [line.split() for line in listing.read_text().splitlines()]
    assert len(rows) == 8 and all(row[1] == "6" for row in rows)
    ds = build_dataset("frame_list", root=out / "videos", annotations=listing,
                       labels=tmp_path / "ssv1.classes.txt", frame_template="{:05d}.jpg", size=16, num_frames=4)
    assert ds[0]["video"].shape == (3, 4, 16, 16) and ds[0]["skipped"] == []
