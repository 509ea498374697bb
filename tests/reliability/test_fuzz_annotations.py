"""Property: every annotation / class-list file a user can feed is read or refused with a DataError
naming the file (never another exception or a hang), and ``data convert`` never leaves a
half-written output behind. Files are random text, random bytes, and "nearly right" files built
from each format's own fields with random values."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability._props import no_temporary_files, own_error_or_success
from videoattn.data.annotations import load_annotations, read_class_file
from videoattn.data.convert import convert_annotations

SUFFIX = {"ssv1": ".csv", "ssv2": ".json", "k400": ".csv", "mini200": ".csv", "diving48": ".json",
          "frame_list": ".txt", "video_list": ".txt"}
LABEL_SUFFIX = {"ssv1": ".csv", "ssv2": ".json", "diving48": ".json"}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
tokens = st.sampled_from(["0", "1", "-1", "7", "3.5", "1e400", "nan", "inf", "99999999999999999999", "",
                          "a b", "x;y", "\x00", "é", "[something]", "all", " "]) | st.text(max_size=8)


def _lines(draw, fields: int, sep: str) -> str:
    rows = draw(st.lists(st.lists(tokens, min_size=0, max_size=fields + 1), max_size=6))
    return "".join(sep.join(row) + "\n" for row in rows)


@st.composite
def nearly_right(draw, format: str) -> tuple[bytes, bytes | None]:
    """(annotation bytes, class-list bytes or None) shaped like ``format`` with random values."""
    if format == "ssv1":
        return _lines(draw, 2, ";").encode(), _lines(draw, 1, " ").encode()
    if format in ("ssv2", "diving48"):
        keys = (["id", "template", "label", "placeholders"] if format == "ssv2"
                else ["vid_name", "label", "start_frame", "end_frame"])
        entries = draw(st.lists(st.dictionaries(st.sampled_from(keys), json_values | tokens, max_size=4)
                                | json_values, max_size=5))
        labels = draw(st.dictionaries(st.text(max_size=8), json_values | tokens, max_size=4)
                      | st.lists(json_values | st.lists(st.text(max_size=5), max_size=3), max_size=4))
        return json.dumps(entries).encode(), json.dumps(labels).encode()
    if format in ("k400", "mini200"):
        header = draw(st.sampled_from(["label,youtube_id,time_start,time_end,split",
                                       "label,youtube_id,time_start,time_end", "youtube_id,label", ""]))
        out = io.StringIO()
        writer = csv.writer(out)
        for row in draw(st.lists(st.lists(tokens, max_size=6), max_size=5)):
            writer.writerow(row)
        labels = _lines(draw, 1, " ").encode() if draw(st.booleans()) else None
        return (header + "\n" + out.getvalue()).encode(), labels
    fields = 3 if format == "frame_list" else 4
    labels = _lines(draw, 1, " ").encode() if draw(st.booleans()) else None
    return _lines(draw, fields, " ").encode(), labels


any_bytes = st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _check_records(result) -> None:
    records, classes = result
    assert all(isinstance(name, str) for name in classes)
    for record in records:
        assert -1 <= record.label < len(classes), (record, len(classes))
        assert isinstance(record.path, str)


@pytest.mark.parametrize("format", list(SUFFIX))
@given(data=st.data())
def test_annotation_files(format, data, tmp_path_factory):
    folder = tmp_path_factory.mktemp(format, numbered=True)
    if data.draw(st.booleans()):
        annotation, labels = data.draw(nearly_right(format))
    else:
        annotation = data.draw(any_bytes)
        labels = data.draw(any_bytes) if format in LABEL_SUFFIX or data.draw(st.booleans()) else None
    ann_path = _write(folder, "ann" + SUFFIX[format], annotation)
    label_path = _write(folder, "labels" + LABEL_SUFFIX.get(format, ".txt"), labels) if labels is not None else None
    subset = _write(folder, "subset.txt", data.draw(any_bytes)) if format == "mini200" else None
    names = tuple(str(p) for p in (ann_path, label_path, subset) if p is not None)
    options = {"subset": subset} if subset else {}
    result = own_error_or_success(f"annotations/{format}", lambda: load_annotations(
        format, ann_path, root=str(folder / "media"), labels=label_path, **options), names)
    if result is not None:
        _check_records(result)

    out_list, out_classes = folder / "out" / "list.txt", folder / "out" / "classes.txt"
    summary = own_error_or_success(f"convert/{format}", lambda: convert_annotations(
        format, ann_path, out_list, out_classes, root=str(folder / "media"), labels=label_path, **options),
        names)
    if summary is None:  # refused: nothing written, nothing half-written
        assert not out_list.exists() and not out_classes.exists()
    else:
        assert out_list.is_file() and out_classes.is_file()
    if out_list.parent.exists():
        no_temporary_files(out_list.parent)


@pytest.mark.parametrize("suffix", [".json", ".txt", ".csv"])
@given(content=any_bytes | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_class_list_files(suffix, content, tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("labels"), "labels" + suffix, content)
    classes = own_error_or_success(f"labels{suffix}", lambda: read_class_file(path), (str(path),))
    if classes is not None:
        assert all(isinstance(name, str) for name in classes)


