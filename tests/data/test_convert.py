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


# --- duplicates and the media check (issue 30) ------------------------------------------------------------


def _with_duplicate(tmp_path):
    """Synthetic SSv2 data whose train.json lists its first video a second time, under another class."""
    out = generate_synthetic(tmp_path / "synth", num_videos=16, frames=8, size=16)
    entries = json.loads((out / "train.json").read_text())
    other = next(e for e in entries if e["template"] != entries[0]["template"])
    entries.append({**entries[0], "template": other["template"]})
    (out / "train.json").write_text(json.dumps(entries))
    return out, entries


def _convert_args(out, listing, *extra):
    return ["data", "convert", "--format", "ssv2", "--root", str(out / "videos"), "--annotations",
            str(out / "train.json"), "--labels", str(out / "labels.json"), "--out", str(listing), "--no-progress",
            *extra]


def test_check_reports_a_duplicate_id_with_both_positions(tmp_path, capsys):
    out, entries = _with_duplicate(tmp_path)
    code = cli_main(["data", "check", "--format", "ssv2", "--root", str(out / "videos"), "--annotations",
                     str(out / "train.json"), "--labels", str(out / "labels.json"), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    last = len(entries)
    first_class = entries[0]["template"].replace("[", "").replace("]", "")
    second_class = entries[-1]["template"].replace("[", "").replace("]", "")
    assert f"{last - 1} ok, 1 bad" in printed
    assert (f"annotated more than once (id {entries[0]['id']!r}: entry 1 as {first_class!r}, entry {last} as "
            f"{second_class!r})") in printed


def test_convert_refuses_duplicates_unless_told(tmp_path, capsys):
    out, entries = _with_duplicate(tmp_path)
    listing = tmp_path / "train.txt"
    assert cli_main(_convert_args(out, listing)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "annotated more than once" in err and f"entry {len(entries)} as" in err
    assert "--duplicates first" in err and not listing.exists()

    assert cli_main(_convert_args(out, listing, "--duplicates", "first")) == 0
    assert "1 videos annotated more than once (kept the first entry" in capsys.readouterr().out
    rows = listing.read_text().splitlines()
    name = f"{entries[0]['id']}.webm"
    assert len(rows) == len(entries) - 1 and sum(row.split()[0] == name for row in rows) == 1

    assert cli_main(_convert_args(out, listing, "--duplicates", "drop")) == 0
    rows = listing.read_text().splitlines()
    assert len(rows) == len(entries) - 2 and not any(row.split()[0] == name for row in rows)


def test_convert_reports_what_check_flags_and_check_drops_it(tmp_path, capsys):
    out = generate_synthetic(tmp_path / "synth", num_videos=16, frames=8, size=16)
    entries = json.loads((out / "train.json").read_text())
    broken = out / "videos" / f"{entries[2]['id']}.webm"
    broken.write_text("this is not a video\n" * 20)
    listing = tmp_path / "train.txt"
    assert cli_main(_convert_args(out, listing)) == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(entries)} of {len(entries)}" in printed
    assert "1 entries flagged by the media check of `data check` (written; --check leaves them out)" in printed
    assert f"{broken}: not a readable video" in printed
    assert cli_main(_convert_args(out, listing, "--check")) == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(entries) - 1} of {len(entries)}" in printed and "(left out: --check)" in printed
    assert broken.name not in listing.read_text()
