"""Each annotation format, from fixture files written here in that format's exact layout."""

from __future__ import annotations

import json

import pytest

from videoattn.data.annotations import (
    kinetics_file_stem,
    list_formats,
    load_annotations,
    read_class_file,
    read_image_folder,
    ssv2_class_name,
)
from videoattn.errors import DataError, UnknownNameError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_ssv1_csv_and_frame_folders(tmp_path):
    labels = write(tmp_path / "something-something-v1-labels.csv",
                   "Holding something\nPushing something from left to right\n")
    train = write(tmp_path / "something-something-v1-train.csv",
                  "100218;Pushing something from left to right\n48;Holding something\n7;Unknown thing\n")
    records, classes = load_annotations("ssv1", train, root=tmp_path / "frames", labels=labels)
    assert classes == ["Holding something", "Pushing something from left to right"]
    assert [r.video_id for r in records] == ["100218", "48", "7"]
    assert [r.label for r in records[:2]] == [1, 0]
    assert records[0].is_frames and records[0].path == str(tmp_path / "frames" / "100218")
    assert records[2].label == -1 and "Unknown thing" in records[2].error


def test_ssv2_json(tmp_path):
    labels = write(tmp_path / "labels.json", json.dumps(
        {"Holding something next to something": "1", "Approaching something with your camera": "0"}))
    train = write(tmp_path / "train.json", json.dumps([
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks"]},
        {"id": "42326", "label": "approaching a cup with your camera",
         "template": "Approaching [something] with your camera", "placeholders": ["a cup"]},
    ]))
    test = write(tmp_path / "test.json", json.dumps([{"id": "1420"}]))
    records, classes = load_annotations("ssv2", train, root=tmp_path, labels=labels)
    assert classes == ["Approaching something with your camera", "Holding something next to something"]
    assert [r.label for r in records] == [1, 0]
    assert records[0].path.endswith("78687.webm")
    unlabeled, _ = load_annotations("ssv2", test, root=tmp_path, labels=labels)
    assert unlabeled[0].label == -1 and unlabeled[0].error is None
    assert ssv2_class_name("Putting [something] on [something]") == "Putting something on something"


def test_kinetics_csv_layouts_and_mini_subset(tmp_path):
    csv_text = ("label,youtube_id,time_start,time_end,split,is_cc\n"
                "air drumming,--nQbRBEz2s,104,114,train,0\n"
                "abseiling,0347ZoDXyP0,19,29,train,0\n"
                "zumba,ZZZZZZZZZZZ,5,15,train,0\n")
    annotations = write(tmp_path / "train.csv", csv_text)
    records, classes = load_annotations("k400", annotations, root=tmp_path)
    assert classes == ["abseiling", "air drumming", "zumba"]
    assert records[0].video_id == kinetics_file_stem("--nQbRBEz2s", 104, 114) == "--nQbRBEz2s_000104_000114"
    candidates = records[0].candidate_paths()
    assert candidates[0] == str(tmp_path / "--nQbRBEz2s_000104_000114.mp4")
    assert str(tmp_path / "train" / "air_drumming" / "--nQbRBEz2s_000104_000114.mp4") in candidates
    assert str(tmp_path / "train" / "air drumming" / "--nQbRBEz2s_000104_000114.mp4") in candidates
    # The per-class layout is found when the flat file is absent.
    nested = tmp_path / "train" / "abseiling"
    nested.mkdir(parents=True)
    (nested / "0347ZoDXyP0_000019_000029.mp4").write_bytes(b"x")
    assert records[1].existing_path() == str(nested / "0347ZoDXyP0_000019_000029.mp4")
    subset = write(tmp_path / "mini_train_ytid_list.txt", "0347ZoDXyP0\nZZZZZZZZZZZ\n")
    mini, mini_classes = load_annotations("mini200", annotations, root=tmp_path, subset=subset)
    assert mini_classes == ["abseiling", "zumba"]
    assert [r.label for r in mini] == [0, 1]
    with pytest.raises(DataError, match="header"):
        load_annotations("k400", write(tmp_path / "bad.csv", "a,b\n1,2\n"))


def test_diving48_json_and_vocab(tmp_path):
    vocab = write(tmp_path / "Diving48_vocab.json", json.dumps(
        [["Back", "15som", "05Twis", "FREE"], ["Back", "15som", "15Twis", "FREE"]]))
    train = write(tmp_path / "Diving48_V2_train.json", json.dumps([
        {"vid_name": "-mmq0PT-u8k_00155", "label": 1, "start_frame": 0, "end_frame": 82},
        {"vid_name": "-mmq0PT-u8k_00156", "label": 7, "start_frame": 3, "end_frame": 60},
    ]))
    records, classes = load_annotations("diving48", train, root=tmp_path, labels=vocab)
    assert classes == ["Back 15som 05Twis FREE", "Back 15som 15Twis FREE"]
    assert records[0].label == 1 and records[0].end_frame == 82 and records[0].path.endswith("_00155.mp4")
    assert records[1].error and "outside the class list" in records[1].error


def test_plain_lists(tmp_path):
    frame_list = write(tmp_path / "train_list.txt", "video dir/a 30 1\nb 12 0\n")
    records, classes = load_annotations("frame_list", frame_list, root=tmp_path)
    assert classes == ["0", "1"]
    assert records[0].path == str(tmp_path / "video dir" / "a") and records[0].num_frames == 30
    video_list = write(tmp_path / "videos.txt", "x/a.mp4 2\nb.mp4 0 5 40\n")
    names = write(tmp_path / "classes.txt", "zero\none\ntwo\n")
    records, classes = load_annotations("video_list", video_list, root=tmp_path, labels=names)
    assert classes == ["zero", "one", "two"]
    assert [r.label for r in records] == [2, 0]
    assert (records[1].start_frame, records[1].end_frame) == (5, 40)
    with pytest.raises(DataError, match=r"videos_bad.txt:1: label must be an integer"):
        load_annotations("video_list", write(tmp_path / "videos_bad.txt", "a.mp4 cat\n"))


def test_class_files_and_image_folder(tmp_path):
    assert read_class_file(write(tmp_path / "c.json", '{"b": "1", "a": "0"}')) == ["a", "b"]
    with pytest.raises(DataError, match="without gaps"):
        read_class_file(write(tmp_path / "gap.json", '{"b": "2", "a": "0"}'))
    with pytest.raises(DataError, match="appears twice"):
        load_annotations("ssv1", write(tmp_path / "t.csv", "1;a\n"), labels=write(tmp_path / "l.csv", "a\na\n"))
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "1.jpg").write_bytes(b"")
    samples, classes = read_image_folder(tmp_path / "images")
    assert classes == ["cat", "dog"] and [label for _, label in samples] == [0, 1]


def test_unknown_format_and_missing_file(tmp_path):
    assert set(list_formats()) >= {"ssv1", "ssv2", "k400", "mini200", "diving48", "frame_list", "video_list"}
    with pytest.raises(UnknownNameError, match="Did you mean 'ssv2'"):
        load_annotations("ssv3", tmp_path / "x.json")
    with pytest.raises(DataError, match="does not exist"):
        load_annotations("ssv2", tmp_path / "missing.json", labels=tmp_path / "labels.json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_annotations("ssv2", write(tmp_path / "broken.json", "[{"), labels=write(tmp_path / "l.json", "{}"))


# --- positions and field names in messages (issue 30) ---------------------------------------------------


def test_ssv2_entry_without_template_names_the_missing_field(tmp_path):
    labels = write(tmp_path / "labels.json", json.dumps({"Holding something next to something": "0"}))
    train = write(tmp_path / "train.json", json.dumps([
        {"id": "1", "label": "holding potato next to a cup", "template": "Holding [something] next to [something]"},
        {"id": "2", "label": "holding potato next to a cup"},                   # template missing
        {"id": "3", "label": "Holding something next to something"},           # a re-release: label is the class
    ]))
    records, _ = load_annotations("ssv2", train, root=tmp_path, labels=labels)
    assert records[0].label == 0 and records[0].error is None
    assert records[1].label == -1
    assert records[1].error.startswith("missing field 'template'") and "entry 2, id '2'" in records[1].error
    assert "is not in the class list" not in records[1].error
    assert records[2].label == 0 and records[2].error is None


@pytest.mark.parametrize("fmt, entries, message", [
    ("ssv2", [{"id": str(i)} for i in range(6)] + [{"no_id": 1}], "entry 7 has no 'id'"),
    ("diving48", [{"vid_name": f"v{i}", "label": 0} for i in range(6)] + [{"label": 0}], "entry 7 has no 'vid_name'"),
    ("diving48", [{"vid_name": "a", "label": 0}, {"vid_name": "b", "label": "x"}], "entry 2 (b) has a non-integer"),
])
def test_entry_positions_count_from_one(tmp_path, fmt, entries, message):
    labels = write(tmp_path / "labels.json", json.dumps({"A": "0"}))
    annotations = write(tmp_path / "a.json", json.dumps(entries))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_annotations(fmt, annotations, root=tmp_path, labels=labels if fmt == "ssv2" else None)


def test_records_carry_their_position(tmp_path):
    labels = write(tmp_path / "labels.json", json.dumps({"A": "0"}))
    ssv2 = write(tmp_path / "a.json", json.dumps([{"id": "1", "template": "A"}, {"id": "2", "template": "A"}]))
    records, _ = load_annotations("ssv2", ssv2, root=tmp_path, labels=labels)
    assert [r.position for r in records] == ["entry 1", "entry 2"]
    listing = write(tmp_path / "list.txt", "# comment\na.mp4 0\n\nb.mp4 0 3 9\n")
    records, _ = load_annotations("video_list", listing, root=tmp_path)
    assert [r.position for r in records] == ["line 2", "line 4"]
