"""Drawing: input frames with heat-map overlays, one row per map, written as one PNG.

Maps are drawn over the frames they belong to with ``nearest`` interpolation, so each cell of a
block's (often coarse) feature grid covers exactly the input pixels it stands for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..analysis.plots import pyplot

__all__ = ["Row", "clip_frame_index", "draw_rows", "layout_rows", "region_overlay"]


@dataclass
class Row:
    """One row of a figure: ``maps[t]`` is drawn over clip frame t (None: the frame alone).

    ``marks[t]`` is a query position ``(y, x)`` in input pixels drawn as a cross; ``temporal`` (one
    weight per clip frame) is drawn as bars in an extra column; ``rgba`` maps are drawn as given
    (coloured masks) instead of through the colour map; ``legend`` (``(label, RGB colour)`` pairs) is
    a colour key to the right of the row (e.g. which colour is which region).
    """

    label: str
    maps: list[np.ndarray | None]
    marks: list[tuple[float, float] | None] = field(default_factory=list)
    temporal: np.ndarray | None = None
    temporal_label: str = ""
    titles: list[str] = field(default_factory=list)
    cmap: str = "jet"
    vmin: float | None = None
    vmax: float | None = None
    alpha: float = 0.55
    rgba: bool = False
    legend: list[tuple[str, tuple[float, ...]]] = field(default_factory=list)


def clip_frame_index(frame: int, clip_frames: int, map_frames: int) -> int:
    """The index along a map's time axis (``map_frames`` long) of clip frame ``frame``."""
    return min(map_frames - 1, frame * map_frames // clip_frames)


def draw_rows(frames: np.ndarray, rows: Sequence[Row], path: str | os.PathLike, title: str,
              panel: float = 1.15) -> Path:
    """``frames`` ``(T, H, W, 3)`` in [0, 1]; one row of T panels per :class:`Row`, written to ``path``."""
    return save_compact(layout_rows(frames, rows, title, panel), path)


def layout_rows(frames: np.ndarray, rows: Sequence[Row], title: str, panel: float = 1.15):
    """The figure of :func:`draw_rows` (not saved)."""
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    plt = pyplot()
    panel = panel * min(1.0, max(0.75, 6 / max(len(rows), 1)))  # many rows (e.g. BAT's groups): smaller panels
    num_frames, height, width = frames.shape[:3]
    extra = any(row.temporal is not None for row in rows)
    columns = num_frames + (1 if extra else 0)
    fig, axes = plt.subplots(len(rows), columns, figsize=(panel * columns + 0.6, panel * len(rows) + 0.7),
                             squeeze=False)
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    for r, row in enumerate(rows):
        finite = [m for m in row.maps if m is not None]
        label = row.label
        if row.rgba or not finite:
            vmin, vmax = 0.0, 1.0
        else:
            # Unless the row fixes its range, stretch it from the smallest to the largest value shown
            # (briefly trained attention is close to uniform) and print that range under the label.
            vmin = row.vmin if row.vmin is not None else min(float(np.min(m)) for m in finite)
            vmax = row.vmax if row.vmax is not None else max(float(np.max(m)) for m in finite)
            if row.vmin is None or row.vmax is None:
                label += f"\ncolour range {vmin:.4g}..{vmax:.4g}"
            if vmax - vmin <= 1e-9 * max(abs(vmax), 1.0):  # one value everywhere (e.g. a single key)
                vmin, vmax = min(0.0, vmin), max(vmax, 1e-12)
        for t in range(num_frames):
            ax = axes[r, t]
            ax.imshow(frames[t], extent=extent, interpolation="nearest")
            heat = row.maps[t] if t < len(row.maps) else None
            if heat is not None:
                if row.rgba:
                    ax.imshow(heat, extent=extent, interpolation="nearest")
                else:
                    ax.imshow(heat, extent=extent, cmap=row.cmap, vmin=vmin, vmax=vmax,
                              alpha=row.alpha, interpolation="nearest")
            mark = row.marks[t] if t < len(row.marks) else None
            if mark is not None:
                ax.plot(mark[1], mark[0], marker="+", color="white", markersize=9, markeredgewidth=2.2)
                ax.plot(mark[1], mark[0], marker="+", color="black", markersize=7, markeredgewidth=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            if t < len(row.titles) and row.titles[t]:
                ax.set_title(row.titles[t], fontsize=6, pad=2)
            elif r == 0:
                ax.set_title(f"frame {t}", fontsize=6, pad=2)
        axes[r, 0].set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center", labelpad=4)
        if extra:
            ax = axes[r, -1]
            if row.temporal is not None:
                ax.bar(range(len(row.temporal)), row.temporal, color="#3b75af")
                ax.set_xticks(range(len(row.temporal)))
                ax.set_xlabel("frame", fontsize=5, labelpad=1)
                # weights on the right: on the left their labels ran into the last frame's panel
                ax.yaxis.tick_right()
                ax.yaxis.set_major_locator(MaxNLocator(4))
                ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
                ax.tick_params(labelsize=5, length=2, pad=1)
                ax.set_title(row.temporal_label, fontsize=6, pad=2)
                ax.set_box_aspect(1)
            else:
                ax.axis("off")
        if row.legend:
            from matplotlib.patches import Patch

            handles = [Patch(facecolor=colour, edgecolor="none", label=name) for name, colour in row.legend]
            axes[r, -1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.04, 0.5), fontsize=6,
                               frameon=False, handlelength=1.2, handletextpad=0.4, borderaxespad=0.0)
    # The title and the column titles under it keep fixed distances in inches from the top edge, so
    # they stay apart in tall figures too (a figure-fraction offset shrank with the number of rows).
    height = panel * len(rows) + 0.7
    fig.suptitle(title, fontsize=8, y=1 - 0.06 / height, va="top")
    fig.subplots_adjust(left=0.16, right=0.98, top=1 - 0.5 / height, bottom=0.02, wspace=0.06, hspace=0.3)
    return fig


def save_compact(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a 256-colour palette PNG (video frames under translucent maps compress badly
    as true colour: a figure of 64 panels goes from about 200 KB to well under half of it)."""
    import io

    from PIL import Image

    from ..utils.io import atomic_write

    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    with atomic_write(path, "wb") as handle:
        handle.write(out.getvalue())
    return Path(path)


def region_overlay(assignment: np.ndarray, regions: Sequence[int], colours: np.ndarray) -> np.ndarray:
    """RGBA ``(H, W, 4)`` masks of the given ``regions`` of one frame's ``assignment`` ``(H, W, K)``:
    each pixel takes the colour of the listed region with the largest relative weight
    ``|G_k(p)| / max_p |G_k(p)|``; opacity grows from 0 at 30% of the region's peak to 0.8 at its peak."""
    weight = np.abs(assignment[..., list(regions)])
    weight = weight / np.maximum(weight.max(axis=(0, 1), keepdims=True), 1e-12)
    best = weight.argmax(axis=-1)
    alpha = np.take_along_axis(weight, best[..., None], axis=-1)[..., 0]
    rgba = np.zeros((*assignment.shape[:2], 4))
    rgba[..., :3] = colours[np.asarray(regions)[best]]
    rgba[..., 3] = 0.8 * np.clip((alpha - 0.3) / 0.7, 0.0, 1.0)  # pixels under 30% of the peak stay clear
    return rgba
