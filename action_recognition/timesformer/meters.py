"""Accuracy meters: top-k over clips or videos and mean per-class accuracy (the paper's mPA)."""
from typing import Dict

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Number of rows whose label is among the ``k`` highest scores (``k`` capped at the class count)."""
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Top-1, top-5 and mean per-class accuracy (%, classes present in ``labels``) from ``(V, K)`` scores."""
    scores_t, labels_t = torch.from_numpy(scores), torch.from_numpy(labels)
    n = len(labels)
    return {
        "top1": 100.0 * topk_correct(scores_t, labels_t, 1) / n,
        "top5": 100.0 * topk_correct(scores_t, labels_t, 5) / n,
        "mean_class_acc": 100.0 * balanced_accuracy_score(labels, scores.argmax(axis=1)),
        "num_videos": n,
    }


class VideoScores:
    """Averages the softmax scores of all views of each video."""

    def __init__(self, num_videos: int, num_classes: int):
        self.sums = np.zeros((num_videos, num_classes), dtype=np.float64)
        self.counts = np.zeros(num_videos, dtype=np.int64)
        self.labels = np.full(num_videos, -1, dtype=np.int64)

    def update(self, probs: torch.Tensor, labels: torch.Tensor, video_index: torch.Tensor) -> None:
        index = video_index.numpy()
        np.add.at(self.sums, index, probs.double().numpy())
        np.add.at(self.counts, index, 1)
        self.labels[index] = labels.numpy()

    def merge(self, other: "VideoScores") -> None:
        seen = other.counts > 0
        self.sums += other.sums
        self.counts += other.counts
        self.labels[seen] = other.labels[seen]

    def scores(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)[:, None]

    def metrics(self) -> Dict[str, float]:
        seen = self.counts > 0
        return classification_metrics(self.scores()[seen], self.labels[seen])
