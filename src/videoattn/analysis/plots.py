"""Figures: accuracy per model, training curves, GTA's learned temporal matrices (GTA Fig. 5: |M| averaged
over groups and heads, darker = larger).

Every function writes one PNG atomically and returns its path. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils.io import atomic_write


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def plot_accuracy(rows: Sequence[Mapping], path: str | os.PathLike, chance: float | None = None,
                  order_blind_ceiling: float | None = None, title: str = "Validation accuracy") -> Path:
    """Bars of ``top1`` per ``model`` (and ``within_pair_top1`` beside them when present), with
    optional chance and order-blind reference lines."""
    plt = pyplot()
    names = [row["model"] for row in rows]
    series = [("top-1", "top1", "#3b75af")]
    if any(row.get("within_pair_top1") is not None for row in rows):
        series.append(("within-pair top-1", "within_pair_top1", "#e1812c"))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(rows) + 3), 4))
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    for offset, (label, key, colour) in enumerate(series):
        values = [100 * (row.get(key) or 0.0) for row in rows]
        bars = ax.bar(x + (offset - (len(series) - 1) / 2) * width, values, width, color=colour, label=label)
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.0f}", ha="center", fontsize=8)
    if order_blind_ceiling is not None:
        ax.axhline(100 * order_blind_ceiling, color="#c44e52", linestyle="--", linewidth=1,
                   label=f"order-blind ceiling ({100 * order_blind_ceiling:.0f}%)")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 * chance:.1f}%)")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 108)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)


def plot_curves(histories: Mapping[str, Sequence[Mapping]], path: str | os.PathLike) -> Path:
    """Training loss and validation top-1 per epoch; ``histories[model]`` is a list of epoch records
    with ``epoch`` and any of ``train_loss``, ``val_top1``."""
    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, records in histories.items():
        epochs = [r["epoch"] for r in records if r.get("train_loss") is not None]
        if epochs:
            loss_ax.plot(epochs, [r["train_loss"] for r in records if r.get("train_loss") is not None],
                         marker="o", markersize=3, label=name)
        epochs = [r["epoch"] for r in records if r.get("val_top1") is not None]
        if epochs:
            acc_ax.plot(epochs, [100 * r["val_top1"] for r in records if r.get("val_top1") is not None],
                        marker="o", markersize=3, label=name)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title("Training loss")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation top-1 (%)")
    acc_ax.set_ylim(0, 100)
    acc_ax.set_title("Validation accuracy")
    acc_ax.legend(fontsize=8)
    return save_figure(fig, path)


def temporal_matrix_magnitude(matrix: torch.Tensor) -> np.ndarray:
    """A GTA temporal matrix (``T x T``, ``G x T x T`` or ``G x G x T x T``) drawn as GTA Fig. 5 draws it:
    absolute values averaged over groups and heads, one ``T x T`` array ``[t_out, t_in]``."""
    flat = matrix.detach().float().cpu().abs().reshape(-1, *matrix.shape[-2:])
    return flat.mean(0).numpy()


def gta_temporal_matrices(model: nn.Module) -> dict[str, dict[str, np.ndarray]]:
    """The learned temporal matrices of every GTA module of ``model`` as
    :func:`temporal_matrix_magnitude` gives them (GTA Fig. 5). Keys: module path, then
    ``"pixel"``/``"region"``; entry ``[t_out, t_in]`` is how much input frame ``t_in`` weighs in output
    frame ``t_out``."""
    from ..blocks.gta import GlobalTemporalAttention
    from ..visualize.maps import gta_matrices

    return {name.removeprefix("backbone."): gta_matrices(module) for name, module in model.named_modules()
            if isinstance(module, GlobalTemporalAttention)}


def plot_temporal_matrices(matrices: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike,
                           title: str = "GTA learned temporal matrices (|M| averaged over groups and heads)"
                           ) -> Path:
    """One heatmap per (module, branch): rows are output frames, columns input frames; darker = larger
    (GTA Fig. 5). Used by ``videoattn demo`` and ``videoattn visualize gta-matrices``."""
    plt = pyplot()
    panels = [(module, branch, m) for module, branches in matrices.items() for branch, m in branches.items()]
    if not panels:
        raise ValueError("no temporal matrices to plot (the model has no GTA block)")
    columns = min(4, len(panels))
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.2 * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (module, branch, matrix) in zip(axes.flat, panels):
        image = ax.imshow(matrix, cmap="Greys", vmin=0.0, vmax=float(matrix.max()) or 1.0)
        ax.set_title(f"{module}\n{branch} branch", fontsize=8)
        ax.set_xlabel("input frame", fontsize=8)
        ax.set_ylabel("output frame", fontsize=8)
        ticks = range(matrix.shape[0])
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=6)
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
