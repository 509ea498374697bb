"""Annotation readers for the datasets of the papers, as released, and the common plain lists.

Every reader returns ``(records, classes)``: a list of :class:`VideoRecord` (one per annotated video)
and the ordered class names (``classes[label]`` is the name of integer label ``label``). Readers never
touch the media: whether a video or frame folder exists is decided when it is read (or by
``videoattn data check``), so loading an annotation file of 200k entries stays fast.

Formats (see ``docs/data.md`` for examples of each file):

``ssv1``
    Something-Something v1: ``something-something-v1-labels.csv`` (one class name per line) and
    ``something-something-v1-{train,validation}.csv`` (``id;label`` per line). Media are JPEG frame
    folders ``<root>/<id>/00001.jpg ...`` (template configurable).
``ssv2``
    Something-Something v2: ``labels.json`` (``{"class name": "index"}``), ``train.json`` /
    ``validation.json`` (lists of ``{"id", "label", "template", "placeholders"}``; the class is the
    template with its brackets removed), and ``test.json`` (ids only). Media ``<root>/<id>.webm``.
``k400`` / ``mini200``
    Kinetics-400 CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``; videos either flat
    (``<youtube_id>_<start:06d>_<end:06d>.mp4``) or under ``<split>/<label>/`` or ``<label>/``.
    Mini-Kinetics-200 is the same CSV restricted to a subset list of YouTube ids (one per line, as
    released with S3D, or video file names); its classes are those present after the restriction.
``diving48``
    Diving48 V2 JSON lists (``vid_name``, ``label``, ``start_frame``, ``end_frame``) and the vocab
    JSON (a list whose entry ``i`` is the list of sub-labels of class ``i``). Media ``<vid_name>.mp4``
    or a frame folder ``<vid_name>/``.
``frame_list``
    ``frame_dir num_frames label`` per line (TSN/TSM lists); ``frame_dir`` relative to the root.
``video_list``
    ``video_path label [start_frame end_frame]`` per line (mmaction2's list, with optional bounds).

Image classification folders (``<folder>/<class>/<image>``) are read by :func:`load_image_folder`
for the ``image_folder`` dataset format (not a video format: ``FORMATS`` does not list it).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, unknown_name

__all__ = [
    "VideoRecord",
    "FormatSpec",
    "FORMATS",
    "list_formats",
    "load_annotations",
    "read_class_file",
    "read_image_folder",
    "load_image_folder",
    "ssv2_class_name",
    "read_ssv1",
    "read_ssv2",
    "read_kinetics",
    "read_mini_kinetics",
    "read_diving48",
    "read_frame_list",
    "read_video_list",
]


@dataclass
class VideoRecord:
    """One annotated video.

    ``path`` is the video file or frame folder (absolute when the reader got a root); ``alt_paths``
    other places the same media may live (Kinetics' flat and per-class layouts); ``label`` is the
    integer class or ``-1`` when the entry has none (test splits); ``start_frame``/``end_frame``
    restrict sampling to ``[start_frame, end_frame)`` (``end_frame`` None: to the end);
    ``num_frames`` is the frame count given by the list, if any; ``error`` is set when the entry
    itself is unusable (e.g. its label is not in the class list): such entries are kept so that the
    loader and ``data check`` can report them. ``position`` is where the entry is in its annotation
    file, counted as a person does: ``"entry 7"`` (the 7th of a JSON list) or ``"line 9"``.
    """

    path: str
    label: int
    video_id: str = ""
    is_frames: bool = False
    alt_paths: tuple[str, ...] = ()
    start_frame: int = 0
    end_frame: int | None = None
    num_frames: int | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)
    position: str = ""

    def candidate_paths(self) -> tuple[str, ...]:
        return (self.path, *self.alt_paths)

    def existing_path(self) -> str | None:
        """The first candidate path that exists on disk, or None."""
        for candidate in self.candidate_paths():
            if os.path.exists(candidate):
                return candidate
        return None


def _join(root: str | os.PathLike | None, relative: str) -> str:
    if root is None or os.path.isabs(relative):
        return relative
    return os.path.join(os.fspath(root), relative)


def _open_text(path: str | os.PathLike, what: str):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist (or is not a file)")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot open {what} file {str(path)!r}: {error}") from error
    try:  # decoded here, so bad bytes are reported with the file rather than mid-iteration
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DataError(f"{what} file {str(path)!r} is not UTF-8 text: byte {data[error.start]:#04x} at "
                        f"line {line} ({error.reason})") from None


def _load_json(path: str | os.PathLike, what: str):
    with _open_text(path, what) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise DataError(f"{what} file {str(path)!r} is not valid JSON: {error}") from error
        except RecursionError:
            raise DataError(f"{what} file {str(path)!r}: JSON nested too deeply to read") from None


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names from a file: one name per line (txt/csv), a JSON list, or SSv2's JSON dict.

    A JSON dict maps class name to index (SSv2 ``labels.json``); names are ordered by that index.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = _load_json(path, "class list")
        if isinstance(data, dict):
            try:
                pairs = sorted(((int(index), name) for name, index in data.items()))
            except (TypeError, ValueError) as error:
                raise DataError(f"class list {str(path)!r}: expected {{'name': index}}, got a value "
                                f"that is not an integer ({error})") from error
            indices = [index for index, _ in pairs]
            if indices != list(range(len(indices))):
                raise DataError(f"class list {str(path)!r}: indices must be 0..{len(indices) - 1} "
                                f"without gaps, got {indices[:10]}...")
            return [name for _, name in pairs]
        if isinstance(data, list):
            return [" ".join(map(str, item)) if isinstance(item, list) else str(item) for item in data]
        raise DataError(f"class list {str(path)!r}: expected a JSON list or dict, got {type(data).__name__}")
    with _open_text(path, "class list") as handle:
        names = [line.strip() for line in handle]
    return [name for name in names if name]


def _class_index(classes: list[str], source: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for position, name in enumerate(classes):
        if name in index:
            raise DataError(f"class list {source}: class {name!r} appears twice (lines "
                            f"{index[name] + 1} and {position + 1})")
        index[name] = position
    return index


def _label_record(record: VideoRecord, name: str, lookup: dict[str, int], source: str) -> VideoRecord:
    label = lookup.get(name)
    if label is None:
        record.label = -1
        record.error = f"label {name!r} is not in the class list ({source})"
    else:
        record.label = label
    return record


# --------------------------------------------------------------------------------------------------
# Something-Something v1 / v2


def read_ssv1(annotations, root=None, labels=None, frame_template: str = "{:05d}.jpg"):
    """SSv1 ``id;label`` CSV + labels CSV (one name per line); media are JPEG frame folders."""
    if labels is None:
        raise DataError("format 'ssv1' needs the class list file (something-something-v1-labels.csv)")
    classes = read_class_file(labels)
    lookup = _class_index(classes, str(labels))
    records = []
    with _open_text(annotations, "ssv1 annotation") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            video_id, sep, name = line.partition(";")
            if not sep or not video_id:
                raise DataError(f"{annotations}:{line_number}: expected 'id;label', got {line!r}")
            record = VideoRecord(path=_join(root, video_id), label=-1, video_id=video_id, is_frames=True,
                                 extra={"frame_template": frame_template}, position=f"line {line_number}")
            if name:
                _label_record(record, name.strip(), lookup, str(labels))
            records.append(record)
    return records, classes


def ssv2_class_name(template: str) -> str:
    """SSv2's class of an entry: its template with the placeholder brackets removed."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(annotations, root=None, labels=None, video_extension: str = ".webm"):
    """SSv2 ``train.json``/``validation.json``/``test.json`` + ``labels.json``."""
    if labels is None:
        raise DataError("format 'ssv2' needs the class list file (labels.json)")
    classes = read_class_file(labels)
    lookup = _class_index(classes, str(labels))
    entries = _load_json(annotations, "ssv2 annotation")
    if not isinstance(entries, list):
        raise DataError(f"ssv2 annotation {str(annotations)!r}: expected a JSON list of entries, got "
                        f"{type(entries).__name__}")
    records = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "id" not in entry:
            raise DataError(f"ssv2 annotation {str(annotations)!r}: entry {number} has no 'id' ({entry!r:.80})")
        video_id = str(entry["id"])
        record = VideoRecord(path=_join(root, video_id + video_extension), label=-1, video_id=video_id,
                             extra={"placeholders": entry.get("placeholders")}, position=f"entry {number}")
        if "template" in entry:
            _label_record(record, ssv2_class_name(str(entry["template"])), lookup, str(labels))
        elif "label" in entry:  # some re-releases carry only the class name in 'label'
            name = str(entry["label"])
            if name in lookup:
                record.label = lookup[name]
            else:  # the official files' 'label' is the filled-in caption; the class is in 'template'
                record.error = (f"missing field 'template' (the class name; entry {number}, id {video_id!r}, has "
                                f"only 'label' {name!r}, which is not a class name either)")
        records.append(record)
    return records, classes


# --------------------------------------------------------------------------------------------------
# Kinetics-400 / Mini-Kinetics-200


def kinetics_file_stem(youtube_id: str, time_start: float, time_end: float) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>``, the name the official download scripts give a clip."""
    return f"{youtube_id}_{int(float(time_start)):06d}_{int(float(time_end)):06d}"


def read_kinetics(annotations, root=None, labels=None, video_extension: str = ".mp4", subset=None):
    """Kinetics CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``).

    Classes come from ``labels`` (one per line) when given, else the sorted labels of the CSV.
    ``subset`` (a file of YouTube ids or clip file names, one per line) keeps only those entries.
    """
    keep: set[str] | None = None
    if subset is not None:
        with _open_text(subset, "subset list") as handle:
            keep = {Path(line.strip()).stem for line in handle if line.strip()}
    rows = []
    try:
        with _open_text(annotations, "kinetics annotation") as handle:
            reader = csv.DictReader(handle)
            needed = {"youtube_id", "time_start", "time_end"}
            if reader.fieldnames is None or not needed <= set(reader.fieldnames):
                raise DataError(f"kinetics annotation {str(annotations)!r}: expected a CSV header with "
                                f"label,youtube_id,time_start,time_end,split; got {reader.fieldnames}")
            for line_number, row in enumerate(reader, start=2):
                try:
                    stem = kinetics_file_stem(row["youtube_id"], row["time_start"], row["time_end"])
                except (TypeError, ValueError, OverflowError) as error:
                    raise DataError(f"{annotations}:{line_number}: bad time_start/time_end "
                                    f"({row.get('time_start')!r}, {row.get('time_end')!r})") from error
                if keep is not None and row["youtube_id"] not in keep and stem not in keep:
                    continue
                rows.append((row, stem, line_number))
    except csv.Error as error:  # e.g. a field longer than the csv module's limit
        raise DataError(f"kinetics annotation {str(annotations)!r} is not a readable CSV: {error}") from None
    if labels is not None:
        classes = read_class_file(labels)
    else:
        classes = sorted({row["label"] for row, _, _ in rows if row.get("label")})
    lookup = _class_index(classes, str(labels) if labels else "labels of the CSV")
    records = []
    for row, stem, line_number in rows:
        label_name = (row.get("label") or "").strip()
        split = (row.get("split") or "").strip()
        file_name = stem + video_extension
        candidates = [file_name]
        if label_name:
            for folder in dict.fromkeys([label_name, label_name.replace(" ", "_")]):
                if split:
                    candidates.append(os.path.join(split, folder, file_name))
                candidates.append(os.path.join(folder, file_name))
        paths = [_join(root, c) for c in candidates]
        record = VideoRecord(path=paths[0], alt_paths=tuple(paths[1:]), label=-1, video_id=stem,
                             extra={"split": split}, position=f"line {line_number}")
        if label_name:
            _label_record(record, label_name, lookup, str(labels) if labels else "labels of the CSV")
        records.append(record)
    return records, classes


def read_mini_kinetics(annotations, root=None, labels=None, video_extension: str = ".mp4", subset=None):
    """Mini-Kinetics-200: the Kinetics CSV restricted to ``subset``; classes are those that remain."""
    records, classes = read_kinetics(annotations, root, labels, video_extension, subset)
    if labels is None:
        present = sorted({classes[r.label] for r in records if r.label >= 0})
        remap = {classes.index(name): new for new, name in enumerate(present)}
        for record in records:
            if record.label >= 0:
                record.label = remap[record.label]
        classes = present
    return records, classes


# --------------------------------------------------------------------------------------------------
# Diving48


def read_diving48(annotations, root=None, labels=None, video_extension: str = ".mp4"):
    """Diving48 V2 JSON list + vocab (``Diving48_vocab.json``; class ``i`` = its sub-labels joined)."""
    entries = _load_json(annotations, "diving48 annotation")
    if not isinstance(entries, list):
        raise DataError(f"diving48 annotation {str(annotations)!r}: expected a JSON list, got "
                        f"{type(entries).__name__}")
    records = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "vid_name" not in entry:
            raise DataError(f"diving48 annotation {str(annotations)!r}: entry {number} has no 'vid_name'")
        name = str(entry["vid_name"])
        try:
            start = int(entry.get("start_frame", 0))
            end = entry.get("end_frame")
            end = None if end is None else int(end)
            label = int(entry.get("label", -1))
        except (TypeError, ValueError, OverflowError) as error:
            raise DataError(f"diving48 annotation {str(annotations)!r}: entry {number} ({name}) has a "
                            f"non-integer label/start_frame/end_frame") from error
        record = VideoRecord(path=_join(root, name + video_extension), alt_paths=(_join(root, name),),
                             label=label, video_id=name, start_frame=start, end_frame=end,
                             position=f"entry {number}")
        records.append(record)
    if labels is not None:
        classes = read_class_file(labels)
    else:
        top = max((r.label for r in records), default=-1)
        classes = _classes_for_int_labels(None, max(top, 47), str(annotations))
    return [_checked_label(record, classes) for record in records], classes


# --------------------------------------------------------------------------------------------------
# Plain lists

#: Without a class list, integer labels 0..max are the classes; a larger max is a typo or a corrupt
#: file (the largest video datasets have about 1,000 classes; ImageNet-21k has 21,841).
MAX_CLASSES_WITHOUT_LIST = 100_000


def _classes_for_int_labels(labels, max_label: int, source: str) -> list[str]:
    if labels is not None:
        return read_class_file(labels)
    if max_label >= MAX_CLASSES_WITHOUT_LIST:
        raise DataError(f"{source}: label {max_label} would make {max_label + 1} classes; without a class list "
                        f"(data.labels) labels must be below {MAX_CLASSES_WITHOUT_LIST}")
    return [str(i) for i in range(max_label + 1)]


def _parse_int(text: str, source: str, line_number: int, what: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise DataError(f"{source}:{line_number}: {what} must be an integer, got {text!r}") from error


def _checked_label(record: VideoRecord, classes: list[str]) -> VideoRecord:
    """Mark ``record`` bad (and unlabelled) when its label is outside ``classes``; -1 means unlabelled."""
    if record.label != -1 and not 0 <= record.label < len(classes):
        record.error = f"label {record.label} is outside the class list (0..{len(classes) - 1})"
        record.label = -1
    return record


def _content_lines(path, what: str):
    """``(line_number, stripped line)`` of a list file, skipping blank lines and ``#`` comments."""
    with _open_text(path, what) as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield line_number, line


def read_frame_list(annotations, root=None, labels=None, frame_template: str = "img_{:05d}.jpg"):
    """``frame_dir num_frames label`` per line (TSN/TSM lists, frames ``img_00001.jpg`` by default)."""
    parsed = []
    for line_number, line in _content_lines(annotations, "frame list"):
        parts = line.rsplit(None, 2)
        if len(parts) != 3:
            raise DataError(f"{annotations}:{line_number}: expected 'frame_dir num_frames label', "
                            f"got {line!r}")
        count = _parse_int(parts[1], str(annotations), line_number, "num_frames")
        label = _parse_int(parts[2], str(annotations), line_number, "label")
        parsed.append((parts[0], count, label, line_number))
    classes = _classes_for_int_labels(labels, max((p[2] for p in parsed), default=-1), str(annotations))
    records = []
    for frame_dir, count, label, line_number in parsed:
        record = VideoRecord(path=_join(root, frame_dir), label=label, video_id=frame_dir, is_frames=True,
                             num_frames=count, extra={"frame_template": frame_template},
                             position=f"line {line_number}")
        records.append(_checked_label(record, classes))
    return records, classes


def read_video_list(annotations, root=None, labels=None):
    """``video_path label [start_frame end_frame]`` per line (``end_frame`` -1: to the end)."""
    parsed = []
    for line_number, line in _content_lines(annotations, "video list"):
        parts = line.split()
        if len(parts) >= 4 and all(p.lstrip("-").isdigit() for p in parts[-3:]):
            path = line.rsplit(None, 3)[0]
            numbers = [_parse_int(p, str(annotations), line_number, "label/start/end") for p in parts[-3:]]
            label, start, end = numbers
            parsed.append((path, label, start, None if end < 0 else end, line_number))  # end -1: to the end
        elif len(parts) >= 2:
            path, label = line.rsplit(None, 1)
            label_value = _parse_int(label, str(annotations), line_number, "label")
            parsed.append((path, label_value, 0, None, line_number))
        else:
            raise DataError(f"{annotations}:{line_number}: expected 'video_path label', got {line!r}")
    classes = _classes_for_int_labels(labels, max((p[1] for p in parsed), default=-1), str(annotations))
    records = []
    for path, label, start, end, line_number in parsed:
        record = VideoRecord(path=_join(root, path), label=label, video_id=path, start_frame=start,
                             end_frame=end, position=f"line {line_number}")
        records.append(_checked_label(record, classes))
    return records, classes


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"image folder {str(folder)!r} does not exist (expected <folder>/<class>/<image>)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image folder {str(folder)!r} has no class sub-folders (expected <folder>/<class>/<image>)")
    return classes


def _images_of(folder: Path) -> list[Path]:
    return [image for image in sorted(folder.rglob("*"))
            if image.suffix.lower() in IMAGE_EXTENSIONS and image.is_file()]


def read_image_folder(root) -> tuple[list[tuple[str, int]], list[str]]:
    """Image classification layout ``<root>/<class>/<image>``: sorted classes, (path, label) pairs."""
    root = Path(root)
    classes = _class_folders(root)
    samples = [(str(image), label) for label, name in enumerate(classes) for image in _images_of(root / name)]
    return samples, classes


def load_image_folder(folder=None, root=None, labels=None) -> tuple[list[VideoRecord], list[str]]:
    """Images of ``<folder>/<class>/<image>`` as records (``folder`` relative to ``root`` unless absolute;
    None: ``root`` itself), for the ``image_folder`` dataset format.

    Classes come from ``labels``: a class file (:func:`read_class_file`) or a folder whose class
    sub-folders name them (the training split's, so that a validation folder lacking a class keeps
    the training labels); None: the sub-folders of ``folder`` itself, sorted. Images of a class folder
    that is not in the list are kept but marked bad (label -1), as entries with unknown labels are in
    the video formats. A record's ``video_id`` is the image's path inside ``folder``
    (``"cat/0001.jpg"``).
    """
    if folder is None and root is None:
        raise DataError("image_folder needs a folder: root and/or annotations (the split's sub-folder)")
    path = Path(_join(root, os.fspath(folder))) if folder is not None else Path(root)
    present = _class_folders(path)
    if labels is None:
        classes = present
    elif Path(labels).is_dir():
        classes = _class_folders(Path(labels))
    else:
        classes = read_class_file(labels)
    lookup = {name: i for i, name in enumerate(classes)}
    records = []
    for name in present:
        label = lookup.get(name, -1)
        error = None if label >= 0 else (f"class folder {name!r} is not in the class list "
                                         f"({str(labels)!r}, {len(classes)} classes)")
        for image in _images_of(path / name):
            records.append(VideoRecord(path=str(image), label=label, error=error,
                                       video_id=image.relative_to(path).as_posix()))
    if not records:
        raise DataError(f"image folder {str(path)!r} has no images ({', '.join(IMAGE_EXTENSIONS)}) in its "
                        f"class sub-folders")
    return records, classes


# --------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class FormatSpec:
    name: str
    reader: Callable
    needs_labels: bool
    frames: bool  # media are frame folders
    description: str


FORMATS: dict[str, FormatSpec] = {
    "ssv1": FormatSpec("ssv1", read_ssv1, True, True,
                       "Something-Something v1: id;label CSV + labels CSV, JPEG frame folders"),
    "ssv2": FormatSpec("ssv2", read_ssv2, True, False,
                       "Something-Something v2: train/validation JSON + labels.json, <id>.webm"),
    "k400": FormatSpec("k400", read_kinetics, False, False,
                       "Kinetics-400 CSV (label,youtube_id,time_start,time_end,split), mp4 clips"),
    "mini200": FormatSpec("mini200", read_mini_kinetics, False, False,
                          "Mini-Kinetics-200: Kinetics CSV + subset list of YouTube ids"),
    "diving48": FormatSpec("diving48", read_diving48, False, False,
                           "Diving48 V2 JSON (vid_name,label,start_frame,end_frame) + vocab JSON"),
    "frame_list": FormatSpec("frame_list", read_frame_list, False, True,
                             "plain list 'frame_dir num_frames label' (TSN/TSM)"),
    "video_list": FormatSpec("video_list", read_video_list, False, False,
                             "plain list 'video_path label [start_frame end_frame]'"),
}


def list_formats() -> list[str]:
    """Names accepted by ``build_dataset(format=...)`` and ``videoattn data``."""
    return list(FORMATS)


def load_annotations(format: str, annotations, root=None, labels=None, **options):
    """Read ``annotations`` of ``format``; ``options`` go to the reader (e.g. ``frame_template``)."""
    spec = FORMATS.get(format)
    if spec is None:
        raise unknown_name("dataset format", format, list(FORMATS))
    if annotations is None:
        raise DataError(f"format {format!r} needs an annotation file")
    import inspect

    accepted = set(inspect.signature(spec.reader).parameters)
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        raise DataError(f"format {format!r} does not take option(s) {unknown}; it takes "
                        f"{sorted(accepted - {'annotations', 'root', 'labels'})}")
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return spec.reader(annotations, root=root, labels=labels, **kwargs)
