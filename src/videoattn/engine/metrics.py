"""Classification metrics: top-k accuracy, mean class accuracy and the confusion matrix.

Mean class accuracy is the average over classes of per-class recall (classes absent from the
evaluated set are left out of the average), as reported by the TSN/TSM family of papers.
"""

from __future__ import annotations

import torch

__all__ = ["confusion_matrix", "mean_class_accuracy", "topk_correct", "summarize_scores"]


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the top-k scores, for each k (k capped at #classes)."""
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"expected scores (N, K) and labels (N,), got {tuple(scores.shape)} and "
                         f"{tuple(labels.shape)}")
    max_k = min(max(ks), scores.shape[1])
    top = scores.topk(max_k, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return [int(hits[:, : min(k, max_k)].any(dim=1).sum()) for k in ks]


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def mean_class_accuracy(matrix: torch.Tensor) -> float:
    support = matrix.sum(dim=1)
    present = support > 0
    if not bool(present.any()):
        return 0.0
    recall = matrix.diag()[present].double() / support[present].double()
    return float(recall.mean())


def summarize_scores(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """top1/top5/mean_class_accuracy (percentages) and count for video-level scores (N, K)."""
    num = int(labels.numel())
    if num == 0:
        return {"top1": 0.0, "top5": 0.0, "mean_class_accuracy": 0.0, "num_videos": 0}
    top1, top5 = topk_correct(scores, labels, (1, 5))
    matrix = confusion_matrix(scores.argmax(dim=1), labels, scores.shape[1])
    return {"top1": 100.0 * top1 / num, "top5": 100.0 * top5 / num,
            "mean_class_accuracy": 100.0 * mean_class_accuracy(matrix), "num_videos": num}
