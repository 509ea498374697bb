"""Every kind of bad entry: recorded and substituted by the loader, raised in strict mode, reported by check."""

from __future__ import annotations

import json
import shutil

import pytest

from videoattn.cli import main as cli_main
from videoattn.data import build_dataset, build_loader, summarize_skipped
from videoattn.data.check import check_dataset
from videoattn.errors import DataError

BAD_KINDS = {
    "empty.mp4": "empty (0 bytes)",
    "text.mp4": "not a readable video",
    "truncated.mp4": "not a readable video",
    "truncated.webm": "truncated",
    "absent.mp4": "file is missing",
    "short.webm": "too few frames",
}


@pytest.fixture(scope="module")
def bad_videos(media_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_videos")
    shutil.copy(media_dir / "clip.mp4", root / "good.mp4")
    shutil.copy(media_dir / "clip.webm", root / "good.webm")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    data = (media_dir / "clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    data = (media_dir / "clip.webm").read_bytes()
    (root / "truncated.webm").write_bytes(data[: len(data) // 3])
    from videoattn.data.synthetic import encode_video

    from ._data_media import moving_square_frames

    encode_video(moving_square_frames(2), root / "short.webm", "webm")
    lines = ["good.mp4 0", "good.webm 1"] + [f"{name} 0" for name in BAD_KINDS] + ["good.mp4 5"]
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("zero\none\n")
    return root


def test_loader_records_and_substitutes(bad_videos):
    ds = build_dataset("video_list", root=bad_videos, annotations=bad_videos / "list.txt",
                       labels=bad_videos / "classes.txt", size=16, num_frames=4, min_frames=3)
    skipped = []
    used = []
    for batch in build_loader(ds, 3, shuffle=False, num_workers=0, drop_last=False):
        assert batch["video"].shape[1:] == (3, 4, 16, 16)
        skipped += batch["skipped"]
        used += batch["index"].tolist()
    assert len(used) == len(ds) and set(used) <= {0, 1}  # every item was replaced by a good entry
    reasons = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in skipped}
    for name, reason in BAD_KINDS.items():
        assert reason in reasons[name], (name, reasons[name])
    assert "not in the class list" in reasons["good.mp4"] or "outside the class list" in reasons["good.mp4"]
    summary = summarize_skipped(skipped)
    assert all(item["count"] >= 1 for item in summary)


def test_strict_raises_naming_the_file(bad_videos):
    (bad_videos / "strict.txt").write_text("good.mp4 0\nempty.mp4 1\n")
    ds = build_dataset("video_list", root=bad_videos, annotations=bad_videos / "strict.txt", size=16,
                       num_frames=4, strict=True)
    assert ds[0]["label"] == 0
    with pytest.raises(DataError, match=r"empty\.mp4: file is empty"):
        ds[1]
    with pytest.raises(DataError, match="outside the class list"):
        build_dataset("video_list", root=bad_videos, annotations=bad_videos / "list.txt",
                      labels=bad_videos / "classes.txt", strict=True)


def test_bad_frame_folders(media_dir, tmp_path):
    frames = tmp_path / "frames"
    shutil.copytree(media_dir / "clip_frames", frames / "good")
    shutil.copytree(media_dir / "clip_frames", frames / "corrupt")
    (frames / "corrupt" / "00003.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (frames / "empty").mkdir()
    (tmp_path / "labels.csv").write_text("Holding something\n")
    (tmp_path / "train.csv").write_text("good;Holding something\ncorrupt;Holding something\n"
                                        "empty;Holding something\nabsent;Holding something\n"
                                        "good;Not a class\n")
    ds = build_dataset("ssv1", root=frames, annotations=tmp_path / "train.csv", labels=tmp_path / "labels.csv",
                       split="test", num_frames=12, size=16)  # 12 of 12 frames: the corrupt one is read
    reasons = [item["reason"] for i in range(len(ds)) for item in ds[i]["skipped"]]
    assert any("00003.jpg: unreadable image" in r for r in reasons)
    assert any("no frames named like" in r for r in reasons)
    assert any("frame folder is missing" in r for r in reasons)
    assert any("'Not a class' is not in the class list" in r for r in reasons)
    report = check_dataset("ssv1", tmp_path / "train.csv", root=frames, labels=tmp_path / "labels.csv",
                           progress=False)
    assert report.num_entries == 5 and report.num_ok == 1 and report.num_bad == 4


def test_data_check_command(bad_videos, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = cli_main(["data", "check", "--format", "video_list", "--root", str(bad_videos), "--annotations",
                     str(bad_videos / "list.txt"), "--labels", str(bad_videos / "classes.txt"),
                     "--min-frames", "3", "--report", str(report_path), "--no-progress"])
    assert code == 1
    report = json.loads(report_path.read_text())
    assert report["num_ok"] == 2 and report["num_bad"] == len(BAD_KINDS) + 1
    assert all(set(item) == {"path", "reason"} for item in report["bad"])
    assert "9 entries checked" in capsys.readouterr().out
    (tmp_path / "good.txt").write_text("good.mp4 0\ngood.webm 1\n")
    assert cli_main(["data", "check", "--format", "video_list", "--root", str(bad_videos), "--annotations",
                     str(tmp_path / "good.txt"), "--no-progress"]) == 0
    # A malformed annotation file is one readable error line and exit code 2, not a traceback.
    (tmp_path / "broken.json").write_text("{")
    assert cli_main(["data", "check", "--format", "ssv2", "--annotations", str(tmp_path / "broken.json"),
                     "--labels", str(tmp_path / "broken.json"), "--no-progress"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
