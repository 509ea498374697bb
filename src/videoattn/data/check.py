"""``videoattn data check``: find every unusable entry of a dataset before training meets it.

Per entry: annotated only once (a video listed twice, e.g. under two classes, is bad from its second
entry on, the reason naming every entry's position and class), label in the class list, media present
(file or frame folder), file not empty, readable as a video with a video stream, not truncated, at
least ``min_frames`` frames in the annotated range, and the first, middle and last frames decode.
Frame folders additionally get every frame file's header checked (``thorough=True`` decodes every
frame instead). Nothing an entry contains can crash the scan: any exception becomes a
``{"path", "reason"}`` entry of the report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..utils.io import atomic_write_json
from ..utils.parallel import map_with_progress
from .annotations import FORMATS, VideoRecord, load_annotations
from .decoders import Decoder, FrameFolderDecoder, build_decoder

__all__ = ["check_dataset", "check_record", "find_duplicates", "CheckReport"]


@dataclass
class CheckReport:
    format: str
    annotations: str
    root: str | None
    num_entries: int = 0
    num_ok: int = 0
    bad: list[dict] = field(default_factory=list)
    decoder: str = ""
    #: Ids annotated more than once: ``{"id", "entries": [{"position", "class"}], "reason"}``.
    duplicates: list[dict] = field(default_factory=list)

    @property
    def num_bad(self) -> int:
        return len(self.bad)

    def reasons(self) -> dict[str, int]:
        """Count of bad entries per kind of reason (the reason text up to its first parenthesis)."""
        counts: dict[str, int] = {}
        for item in self.bad:
            kind = item["reason"].split(" (")[0].split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict:
        return {"format": self.format, "annotations": self.annotations, "root": self.root,
                "decoder": self.decoder, "num_entries": self.num_entries, "num_ok": self.num_ok,
                "num_bad": self.num_bad, "reasons": self.reasons(), "bad": self.bad,
                "duplicates": self.duplicates}

    def summary(self) -> str:
        lines = [f"{self.num_entries} entries checked ({self.format}, {self.annotations}): "
                 f"{self.num_ok} ok, {self.num_bad} bad"]
        for kind, count in self.reasons().items():
            lines.append(f"  {count:6d}  {kind}")
        return "\n".join(lines)


def find_duplicates(records: list[VideoRecord], classes: list[str]) -> list[dict]:
    """Groups of records that annotate the same video (same id, or path, and frame range), in file order:
    ``{"id", "indices", "entries": [{"position", "class"}], "reason"}``; ``reason`` names every entry."""
    groups: dict[tuple, list[int]] = {}
    for index, record in enumerate(records):
        key = (record.video_id or record.path, record.start_frame, record.end_frame)
        groups.setdefault(key, []).append(index)
    out = []
    for (video_id, _, _), indices in groups.items():
        if len(indices) < 2:
            continue
        entries = []
        for index in indices:
            record = records[index]
            name = classes[record.label] if 0 <= record.label < len(classes) else None
            entries.append({"position": record.position or f"entry {index + 1}", "class": name})
        listed = ", ".join(f"{e['position']} as {e['class']!r}" if e["class"] is not None
                           else f"{e['position']} (no class)" for e in entries)
        out.append({"id": video_id, "indices": indices, "entries": entries,
                    "reason": f"annotated more than once (id {video_id!r}: {listed})"})
    return out


def _strip_path(message: str, path: str) -> str:
    head, sep, tail = message.partition(": ")
    return tail if sep and head == path else message


def check_record(record: VideoRecord, decoder: Decoder, min_frames: int = 1, thorough: bool = False) -> dict | None:
    """None when ``record`` is usable, else ``{"path", "reason"}``. Never raises."""
    path = record.existing_path() or record.path
    try:
        if record.error:
            return {"path": path, "reason": record.error}
        if not os.path.exists(path):
            return {"path": path, "reason": "frame folder is missing" if record.is_frames else "file is missing"}
        if hasattr(decoder, "with_template"):  # frame folders (Pillow or DALI)
            decoder = decoder.with_template(record.extra.get("frame_template"))
        total = decoder.num_frames(path)
        end = total if record.end_frame is None else min(record.end_frame, total)
        usable = end - record.start_frame
        if usable < min_frames:
            return {"path": path, "reason": f"too few frames ({max(usable, 0)} usable, at least {min_frames} needed)"}
        if thorough:
            wanted = np.arange(record.start_frame, end)
        else:
            wanted = np.unique(np.array([record.start_frame, record.start_frame + usable // 2, end - 1]))
        if isinstance(decoder, FrameFolderDecoder) and not thorough:
            _check_frame_headers(path, decoder, total)
        decoder.get_frames(path, wanted)
    except DataError as error:
        return {"path": path, "reason": _strip_path(str(error), path)}
    except Exception as error:  # the scan reports, it never crashes
        return {"path": path, "reason": f"{type(error).__name__}: {error}"}
    return None


def _check_frame_headers(folder: str, decoder: FrameFolderDecoder, total: int) -> None:
    from PIL import Image

    for k in range(total):
        name = os.path.join(folder, decoder.template.format(k + decoder.start_index))
        try:
            with Image.open(name) as image:
                image.verify()
        except FileNotFoundError as error:
            raise DataError(f"{name}: frame file is missing (frames are not numbered contiguously)") from error
        except Exception as error:
            raise DataError(f"{name}: unreadable image ({type(error).__name__}: {error})") from error


def check_dataset(format: str, annotations, root=None, labels=None, *, decoder: str = "auto",
                  frame_template: str | None = None, subset=None, video_extension: str | None = None,
                  min_frames: int = 1, thorough: bool = False, num_workers: int = 2, progress: bool = True,
                  report=None) -> CheckReport:
    """Scan every entry; return (and, with ``report``, atomically write as JSON) the :class:`CheckReport`."""
    if format not in FORMATS:
        load_annotations(format, annotations)  # raises the helpful unknown-format error
    spec = FORMATS[format]
    template = (frame_template or ("{:05d}.jpg" if format == "ssv1" else "img_{:05d}.jpg")) if spec.frames else None
    records, classes = load_annotations(format, annotations, root=root, labels=labels, frame_template=template,
                                        subset=subset, video_extension=video_extension)
    duplicates = find_duplicates(records, classes)
    duplicate_of = {index: group for group in duplicates for index in group["indices"]}
    backend = build_decoder(decoder, frames=spec.frames, frame_template=template)
    result = CheckReport(format=format, annotations=str(annotations), root=None if root is None else str(root),
                         num_entries=len(records), decoder=backend.name,
                         duplicates=[{k: v for k, v in g.items() if k != "indices"} for g in duplicates])

    def one(record):
        return check_record(record, backend, min_frames, thorough)

    with map_with_progress(one, records, workers=num_workers, total=len(records), progress=progress,
                           desc="checking", unit="entry") as outcomes:
        for index, outcome in enumerate(outcomes):
            group = duplicate_of.get(index)
            if group is not None and index != group["indices"][0]:
                # each repeat is bad, its reason naming every entry: which one is right is for a person to say
                outcome = {"path": records[index].path, "reason": group["reason"]} if outcome is None else \
                    {**outcome, "reason": f"{outcome['reason']}; also {group['reason']}"}
            if outcome is None:
                result.num_ok += 1
            else:
                result.bad.append(outcome)
    if report is not None:
        atomic_write_json(report, result.to_dict())
    return result
