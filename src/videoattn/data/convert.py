"""``videoattn data convert``: a released dataset's annotations -> the unified plain list + class file.

Video datasets become a ``video_list`` (``relative/path label [start_frame end_frame]``), frame-folder
datasets a ``frame_list`` (``relative/dir num_frames label``, the frame count read from the folder).
Paths are written relative to ``root`` so the pair (list, root) loads with
``build_dataset(format="video_list" | "frame_list", root=root, annotations=list, labels=classes)``.
Entries whose media is missing (or whose label is not in the class list) are left out and reported.
Unlabelled entries (test splits) are written with label ``-1``.

A video annotated more than once (the same id twice, e.g. under two classes) stops the conversion
before anything is written, naming both entries, unless ``duplicates`` says to keep each video's first
entry (``"first"``) or to leave all of its entries out (``"drop"``). Every written entry also gets
``data check``'s media check (readable, enough frames, first/middle/last frame decode): what fails is
reported (``check="report"``), left out (``"drop"``, the command's ``--check``), or not looked for
(``"skip"``).
"""

from __future__ import annotations

import os

from ..errors import DataError
from ..utils.io import atomic_write_text
from .annotations import FORMATS, load_annotations
from .decoders import FrameFolderDecoder, build_decoder

DUPLICATE_POLICIES = ("refuse", "first", "drop")
CHECK_POLICIES = ("report", "drop", "skip")

__all__ = ["convert_annotations"]


def convert_annotations(format: str, annotations, out_list, out_classes, root=None, labels=None, *,
                        frame_template: str | None = None, subset=None, video_extension: str | None = None,
                        duplicates: str = "refuse", check: str = "report", num_workers: int = 2,
                        progress: bool = False) -> dict:
    """Write ``out_list`` and ``out_classes`` (one class name per line); return a summary dict.

    The summary holds ``list_format`` ("video_list" or "frame_list"), ``num_entries``, ``written``,
    ``frame_template`` (for frame lists), ``missing``/``bad``/``check_failed``: ``[{"path", "reason"}]``
    (``check_failed``: what ``data check`` flags, written unless ``check="drop"``), ``check`` and
    ``duplicates``: ``[{"id", "entries": [{"position", "class"}], "reason", "kept"}]``.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates: got {duplicates!r}; expected one of {', '.join(DUPLICATE_POLICIES)}")
    if check not in CHECK_POLICIES:
        raise DataError(f"check: got {check!r}; expected one of {', '.join(CHECK_POLICIES)}")
    if format not in FORMATS:
        load_annotations(format, annotations)
    if root is None:
        raise DataError("convert needs the media root (--root) to find each entry's media and write "
                        "paths relative to it")
    spec = FORMATS[format]
    template = (frame_template or ("{:05d}.jpg" if format == "ssv1" else "img_{:05d}.jpg")) if spec.frames else None
    records, classes = load_annotations(format, annotations, root=root, labels=labels, frame_template=template,
                                        subset=subset, video_extension=video_extension)
    broken = [name for name in classes if "\n" in name or "\r" in name]
    if broken:
        raise DataError(f"class {broken[0]!r} (from {str(labels or annotations)!r}) contains a line break; it "
                        f"cannot be written one per line to {str(out_classes)!r}")
    from .check import find_duplicates

    groups = find_duplicates(records, classes)
    if groups and duplicates == "refuse":
        more = f" (and {len(groups) - 1} more)" if len(groups) > 1 else ""
        raise DataError(f"{str(annotations)!r}: {len(groups)} video(s) {groups[0]['reason']}{more}; nothing was "
                        f"written. Fix the file, or pass --duplicates first (keep each video's first entry) or "
                        f"--duplicates drop (leave out every entry of such a video)")
    left_out = {i for g in groups for i in (g["indices"] if duplicates == "drop" else g["indices"][1:])}
    duplicate_report = [{"id": g["id"], "entries": g["entries"], "reason": g["reason"],
                         "kept": g["entries"][0]["position"] if duplicates == "first" else None} for g in groups]
    counter = FrameFolderDecoder(template) if spec.frames else None
    lines, missing, bad, written = [], [], [], []
    for index, record in enumerate(records):
        if index in left_out:
            continue
        if record.error:
            bad.append({"path": record.path, "reason": record.error})
            continue
        path = record.existing_path()
        if path is None:
            missing.append({"path": record.path,
                            "reason": "frame folder is missing" if record.is_frames else "file is missing"})
            continue
        relative = os.path.relpath(path, root)
        if any(ch.isspace() for ch in relative[-1:]) or "\n" in relative:
            bad.append({"path": path, "reason": "path ends with white space or contains a line break"})
            continue
        if spec.frames:
            try:
                count = counter.num_frames(path)
            except DataError as error:
                bad.append({"path": path, "reason": str(error).partition(": ")[2] or str(error)})
                continue
            lines.append(f"{relative} {count} {record.label}")
        elif record.start_frame or record.end_frame is not None:
            end = -1 if record.end_frame is None else record.end_frame
            lines.append(f"{relative} {record.label} {record.start_frame} {end}")
        else:
            lines.append(f"{relative} {record.label}")
        written.append(record)
    check_failed = []
    if check != "skip" and written:
        from ..utils.parallel import map_with_progress
        from .check import check_record

        backend = build_decoder("auto", frames=spec.frames, frame_template=template)
        with map_with_progress(lambda r: check_record(r, backend), written, workers=num_workers,
                               total=len(written), progress=progress, desc="checking", unit="entry") as outcomes:
            flags = list(outcomes)
        check_failed = [flag for flag in flags if flag is not None]
        if check == "drop":
            lines = [line for line, flag in zip(lines, flags) if flag is None]
    atomic_write_text(out_classes, "".join(f"{name}\n" for name in classes))
    atomic_write_text(out_list, "".join(f"{line}\n" for line in lines))
    return {"list_format": "frame_list" if spec.frames else "video_list", "frame_template": template,
            "num_entries": len(records), "written": len(lines), "missing": missing, "bad": bad,
            "check": check, "check_failed": check_failed, "duplicates": duplicate_report,
            "num_classes": len(classes)}
