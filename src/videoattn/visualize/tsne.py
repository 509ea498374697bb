"""t-SNE of clip features over a dataset split, coloured by class (SA-GSM Fig. 9).

Each video of the split, the training split included, is read as ``videoattn test`` reads a validation
video (one centre clip, ``1x1``, no augmentation); its feature is the input of the classifier (the
backbone's pooled feature) averaged over the frames, captured by a forward pre-hook on ``model.fc``.
The 2-D embedding is scikit-learn's :class:`~sklearn.manifold.TSNE`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..analysis.plots import pyplot, save_figure
from ..config import Config
from ..errors import ConfigError, DataError

__all__ = ["clip_features", "tsne_figure"]


@torch.no_grad()
def clip_features(model: nn.Module, config: Config, split: str = "val", max_videos: int | None = None,
                  num_frames: int | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features ``(V, C)``, labels ``(V,)`` and class names of up to ``max_videos`` videos of ``split``."""
    from tqdm import tqdm

    from ..data.sampler import ResumableSampler
    from ..engine.builders import build_dataset_for, build_loader_for

    head = getattr(model, "fc", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError("visualize tsne: the model has no linear classifier 'fc' whose input to read")
    # Every split, the training one too, read like `videoattn test` reads it (one centre clip, centre crop,
    # no flip), not with the training augmentation.
    dataset = build_dataset_for(config, split, num_frames=num_frames, views="1x1", evaluation=True)
    total = len(dataset) if max_videos is None else min(len(dataset), max_videos)
    sampler = ResumableSampler(total, shuffle=False, num_replicas=1, rank=0, drop_last=False)
    loader = build_loader_for(dataset, config.eval.batch_size, sampler, 0, False, seed=0, drop_last=False)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    features, labels = [], []
    try:
        with tqdm(total=total, desc=f"t-SNE features ({split})", unit="video", disable=not progress,
                  file=sys.stderr) as bar:
            for batch in loader:
                if "video" not in batch:
                    continue
                captured.clear()
                video = batch["video"]
                model(video)
                pooled = captured[-1]  # (N*T', C)
                features.append(pooled.view(video.shape[0], -1, pooled.shape[-1]).mean(dim=1))
                labels.append(torch.as_tensor(batch["label"]).long())
                bar.update(video.shape[0])
    finally:
        handle.remove()
    if not features:
        raise DataError(f"visualize tsne: none of the {total} videos of the {split} split could be read")
    return torch.cat(features).numpy(), torch.cat(labels).numpy(), list(getattr(dataset, "classes", []) or [])


def tsne_figure(model: nn.Module, config: Config, out: Path, split: str = "val", max_videos: int | None = None,
                num_frames: int | None = None, seed: int = 0, progress: bool = True) -> list[Path]:
    from sklearn.manifold import TSNE

    features, labels, classes = clip_features(model, config, split, max_videos, num_frames, progress)
    if len(features) < 3:
        raise DataError(f"visualize tsne: t-SNE needs at least 3 videos, the {split} split gave {len(features)}")
    perplexity = float(min(30.0, (len(features) - 1) / 3))
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    present = sorted(set(int(label) for label in labels))
    cmap = plt.get_cmap("tab20" if len(present) > 10 else "tab10")
    for i, label in enumerate(present):
        chosen = labels == label
        name = classes[label] if 0 <= label < len(classes) else ("unlabelled" if label < 0 else f"class {label}")
        ax.scatter(embedding[chosen, 0], embedding[chosen, 1], s=12, color=cmap(i % cmap.N), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of clip features, {split} split ({len(features)} videos, perplexity {perplexity:.0f})",
                 fontsize=9)
    if len(present) <= 24:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return [save_figure(fig, out / "tsne.png")]
