"""Exceptions raised by videoattn.

Every error raised on purpose by library code derives from :class:`VideoAttnError`, so the CLI can
turn it into one readable line and a non-zero exit code. Messages name the file, key or value at
fault and say what was expected.
"""

from __future__ import annotations


class VideoAttnError(Exception):
    """Base class of videoattn's own errors."""


class ConfigError(VideoAttnError, ValueError):
    """A configuration key or value is unknown, of the wrong type or out of range."""


class ShapeError(VideoAttnError, ValueError):
    """A tensor does not have the layout or size a module expects."""


class DataError(VideoAttnError):
    """A dataset file, annotation or video cannot be read or is malformed."""


class CheckpointError(VideoAttnError):
    """A checkpoint or weight file cannot be loaded safely or does not fit the model."""


class UnknownNameError(VideoAttnError, KeyError):
    """A registry (models, blocks, formats) was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> UnknownNameError:
    """Build the error for an unknown registry name, listing the known ones (and close matches)."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}")


def short_list(items: list[str], limit: int = 8) -> str:
    """``items`` joined with commas for a one-line message: the first ``limit``, then how many in all."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
