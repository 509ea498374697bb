"""Checks run before training or evaluation starts: are the annotated videos where ``data.root`` says?

A wrong ``data.root`` would otherwise show only once the loader runs, as a string of bad entries.
:func:`check_media_present` looks for every annotated file (or a seeded random sample of a large
split). When the first missing file turns up a directory level or two away, the root is wrong: it
raises one :class:`DataError` line naming the root that holds it. Otherwise the files are really
gone, which real datasets live with (a few percent of Kinetics' YouTube videos are never
downloadable): up to ``tolerance`` of the checked entries it warns with the count and an example,
and the run goes on (training substitutes them, evaluation leaves them out and lists them); above
it, it raises.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from typing import Any

from ..errors import DataError

__all__ = ["check_media_present", "find_likely_root"]

log = logging.getLogger(__name__)

#: How many directories :func:`find_likely_root` looks into at most (it stops early on a match).
MAX_DIRECTORIES = 2000


def check_media_present(dataset: Any, root: str | None, annotations: str, sample_size: int = 2000,
                        seed: int = 0, tolerance: float = 0.0, warn: bool = True) -> int:
    """Check that the media listed by ``dataset.records`` exist; return how many checked ones are missing.

    ``annotations`` names where the list came from (e.g. ``"data.train_annotations 'x.json'"``).
    With more than ``sample_size`` entries a seeded random sample of that size is checked. Raises
    :class:`DataError` when a missing file is found under another root, or when more than
    ``tolerance`` (a fraction) of the checked entries are missing; otherwise prints one warning line
    (``warn``) and returns the count.
    """
    records = list(getattr(dataset, "records", None) or [])
    if not records:
        return
    sampled = len(records) > sample_size
    chosen = [records[i] for i in sorted(random.Random(seed).sample(range(len(records)), sample_size))] \
        if sampled else records
    missing = [record for record in chosen if record.existing_path() is None]
    if not missing:
        return 0
    what = "frame folders" if missing[0].is_frames else "files"
    count = (f"{len(missing)} of {len(chosen)} sampled {what} (of {len(records)})" if sampled
             else f"{len(missing)} of {len(chosen)} {what}")
    first = missing[0]
    found = find_likely_root(first.candidate_paths(), root)
    if found is None and len(missing) <= tolerance * len(chosen):
        message = (f"warning: {count} listed in {annotations} are missing under data.root {str(root or '')!r} "
                   f"(e.g. {first.path!r}), within data.missing_tolerance={tolerance:g}: training substitutes "
                   "them, evaluation leaves them out and lists them")
        log.warning(message)
        if warn:
            print(message, file=sys.stderr)
        return len(missing)
    if found is not None:
        hint = f"they seem to be under {found!r}: set data.root={found}"
    else:
        hint = (f"that is more than data.missing_tolerance={tolerance:g} of them; check data.root, restore the "
                "missing media, leave them out of the annotations (`videoattn data check` lists every bad entry) "
                "or raise data.missing_tolerance")
    raise DataError(f"config key 'data.root' ({str(root or '')!r}): {count} listed in {annotations} are "
                    f"missing, e.g. {first.path!r}; {hint}")


def find_likely_root(paths: tuple[str, ...] | list[str], root: str | None) -> str | None:
    """A directory ``D`` near ``root`` (up to two levels below it or below its parent, or the parent
    itself) such that ``D/<path relative to root>`` exists for one of ``paths``; None if none is found."""
    base = os.path.abspath(root) if root else os.path.dirname(os.path.abspath(paths[0]))
    relatives = []
    for path in paths:
        absolute = os.path.abspath(path)
        relative = os.path.relpath(absolute, base)
        relatives.append(os.path.basename(absolute) if relative.startswith(os.pardir) else relative)
    visited = 0
    parent = os.path.dirname(base)
    for top, include_top in ((base, False), (parent, True)):
        for directory in _directories(top, include_top, depth=2, skip=base if top == parent else None):
            visited += 1
            if visited > MAX_DIRECTORIES:
                return None
            for relative in relatives:
                if os.path.exists(os.path.join(directory, relative)):
                    return directory
    return None


def _directories(top: str, include_top: bool, depth: int, skip: str | None):
    """``top`` (if asked) and its sub-directories down to ``depth`` levels, breadth first, hidden ones
    and ``skip`` (a tree already searched) left out."""
    if include_top:
        yield top
    level = [top]
    for _ in range(depth):
        following = []
        for directory in level:
            try:
                with os.scandir(directory) as entries:
                    names = sorted(entry.path for entry in entries
                                   if entry.is_dir(follow_symlinks=True) and not entry.name.startswith("."))
            except OSError:
                continue
            for path in names:
                if skip is not None and os.path.abspath(path) == skip:
                    continue
                yield path
                following.append(path)
        level = following
