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

__all__ = ["curves_figure", "read_history"]

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


def _name(run_dir: str | Path) -> str:
    path = Path(run_dir).resolve()
    if path.is_file():
        path = path.parent
    return path.name


def curves_figure(run_dirs: Sequence[str | Path], out: Path, names: Sequence[str] | None = None) -> list[Path]:
    if not run_dirs:
        raise DataError("visualize curves needs at least one run work dir (--run DIR)")
    histories = {(names[i] if names and i < len(names) else _name(d)): read_history(d) for i, d in enumerate(run_dirs)}
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for i, (name, records) in enumerate(histories.items()):
        for ax, (label, train_key, val_key) in zip(axes, _SERIES):
            for key, style, split in ((train_key, "-", "train"), (val_key, "--", "val")):
                points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                if points:
                    ax.plot(*zip(*points), style, marker="o", markersize=3, color=colours(i % 10),
                            label=f"{name} {split}")
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
    axes[0].legend(fontsize=7)
    fig.suptitle("solid: training, dashed: validation", fontsize=8)
    return [save_figure(fig, out / "curves.png")]
