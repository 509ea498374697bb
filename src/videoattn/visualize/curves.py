"""Training curves from run work dirs (SA-GSM Figs. 5-8): loss, top-1 and top-5, training and
validation, several runs overlaid.

A run's history is the ``"epoch"`` records of its ``metrics.jsonl`` (written by the engine's
:class:`~videoattn.engine.runlog.RunLogger`): ``train_loss``, ``train_top1`` every epoch and
``val_loss``, ``val_top1``, ``val_top5`` at validation epochs (percentages).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..analysis.plots import pyplot, save_figure
from ..errors import DataError

__all__ = ["curves_figure", "draw_curves", "read_history", "run_labels"]

_SERIES = (("loss", "train_loss", "val_loss"), ("top-1 (%)", "train_top1", "val_top1"),
           ("top-5 (%)", "train_top5", "val_top5"))


def read_history(run_dir: str | Path) -> list[dict]:
    """The epoch records of a run's ``metrics.jsonl`` (``run_dir`` may also be the file itself or a
    checkpoint inside the work dir), in epoch order."""
    path = Path(run_dir)
    if path.is_file() and path.name != "metrics.jsonl":
        path = path.parent
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"run {str(run_dir)!r}: no metrics.jsonl (expected a work dir written by videoattn train)")
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if record.get("kind") == "epoch" and "epoch" in record:
            records[int(record["epoch"])] = record  # a resumed run's later record wins
    if not records:
        raise DataError(f"{str(path)!r} has no epoch records yet (the run has not finished an epoch)")
    return [records[epoch] for epoch in sorted(records)]


def _run_dir(run_dir: str | Path) -> Path:
    """The work dir a ``--run`` argument stands for (it may be a file inside it)."""
    path = Path(run_dir).resolve()
    return path.parent if path.is_file() else path


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """One label per run: the shortest suffix of its work dir's path that no other run's path ends with
    (``cv/a/tiny``, ``cv/b/tiny`` -> ``a/tiny``, ``b/tiny``; ``work/gta``, ``work/nl`` -> ``gta``, ``nl``)."""
    paths = [_run_dir(d) for d in run_dirs]
    parts = [p.parts[1:] if p.anchor else p.parts for p in paths]
    seen: dict[Path, str] = {}
    for given, path in zip(run_dirs, paths):
        if path in seen:
            raise DataError(f"visualize curves: run {str(given)!r} is given twice (also as {seen[path]!r}); "
                            f"each --run must be a different work dir")
        seen[path] = str(given)
    labels = []
    for i, own in enumerate(parts):
        for k in range(1, len(own) + 1):
            if all(other[-k:] != own[-k:] for j, other in enumerate(parts) if j != i):
                break
        labels.append("/".join(own[-k:]) if own else str(paths[i]))
    return labels


def draw_curves(histories: Sequence[tuple[str, list[dict]]]):
    """The figure of :func:`curves_figure` (not saved): ``histories`` is ``(label, epoch records)`` per run.

    Training is a solid line without markers, validation a dashed line with open circles at the
    epochs that were validated, so the two stay apart however many epochs there are (markers on every
    point of both hid the dashes); a series of a single epoch is a marker of its own style.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for i, (name, records) in enumerate(histories):
        colour = colours(i % 10)
        for ax, (label, train_key, val_key) in zip(axes, _SERIES):
            for key, split in ((train_key, "train"), (val_key, "val")):
                points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                if not points:
                    continue
                if split == "train":
                    style = {"linestyle": "-", "linewidth": 1.6,
                             "marker": "s" if len(points) == 1 else "None", "markersize": 4}
                else:
                    style = {"linestyle": (0, (4, 2)), "linewidth": 1.4, "marker": "o", "markersize": 4.5,
                             "markerfacecolor": "white", "markeredgewidth": 1.2,
                             "markevery": -(-len(points) // 12)}  # at most 12 circles
                ax.plot(*zip(*points), color=colour, label=f"{name} {split}", **style)
            ax.set_xlabel("epoch")
            ax.set_title(label, fontsize=10)
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[1:]:
        ax.set_ylim(0, 100)
    losses = [v for line in axes[0].get_lines() for v in line.get_ydata() if v > 0]
    if losses and max(losses) > 10 * min(losses):  # a validation spike would flatten the rest
        axes[0].set_yscale("log")
        axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
        # label the 2s and 5s between the decades; all eight minor labels overlap
        axes[0].yaxis.set_minor_formatter(FuncFormatter(
            lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else ""))
    axes[0].legend(fontsize=7, handlelength=3)
    fig.suptitle("solid: training; dashed with open circles: validation", fontsize=8)
    return fig


def curves_figure(run_dirs: Sequence[str | Path], out: Path, names: Sequence[str] | None = None) -> list[Path]:
    """``curves.png`` of the runs ``run_dirs`` (labelled ``names``, default :func:`run_labels`)."""
    if not run_dirs:
        raise DataError("visualize curves needs at least one run work dir (--run DIR)")
    labels = run_labels(run_dirs)
    if names:
        labels = [str(names[i]) if i < len(names) else label for i, label in enumerate(labels)]
        if len(set(labels)) < len(labels):
            raise DataError(f"visualize curves: run names must differ, got {labels}")
    histories = [(label, read_history(d)) for label, d in zip(labels, run_dirs)]
    return [save_figure(draw_curves(histories), out / "curves.png")]
