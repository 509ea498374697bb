"""Top-k accuracy, confusion matrix and mean class accuracy."""

import torch

from videoattn.engine.metrics import confusion_matrix, mean_class_accuracy, summarize_scores, topk_correct


def test_topk_and_mean_class_accuracy():
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3]])
    labels = torch.tensor([0, 1, 1, 2])
    assert topk_correct(scores, labels, (1, 2)) == [2, 4]
    matrix = confusion_matrix(scores.argmax(1), labels, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 0]]
    # recall per class: 1, 0.5, 0 -> mean 0.5 (while top-1 is 0.5 by chance too; use uneven support)
    assert mean_class_accuracy(matrix) == 0.5
    summary = summarize_scores(scores, labels)
    assert summary["top1"] == 50.0
    assert summary["top5"] == 100.0  # k capped at the number of classes
    assert summary["num_videos"] == 4


def test_mean_class_accuracy_ignores_absent_classes_and_weights_classes_equally():
    labels = torch.tensor([0, 0, 0, 1])
    predictions = torch.tensor([0, 0, 0, 0])
    matrix = confusion_matrix(predictions, labels, 4)
    assert mean_class_accuracy(matrix) == 0.5  # classes 2, 3 absent; top-1 would be 75%
