"""Accuracy meters: top-k over clips or videos and mean per-class accuracy (the paper's mPA)."""
from typing import Dict

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from timm.utils import accuracy


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Top-1, top-5 and mean per-class accuracy (%, classes present in ``labels``) from ``(V, K)`` scores."""
    top1, top5 = accuracy(torch.from_numpy(scores), torch.from_numpy(labels), topk=(1, min(5, scores.shape[1])))
    n = len(labels)
    return {
        "top1": float(top1),
        "top5": float(top5),
        "mean_class_acc": 100.0 * balanced_accuracy_score(labels, scores.argmax(axis=1)),
        "num_videos": n,
    }


class VideoScores:
    """Averages the scores (logits or softmax probabilities) of all views of each video; the
    average ranks classes as the sum does."""

    def __init__(self, num_videos: int, num_classes: int):
        self.sums = np.zeros((num_videos, num_classes), dtype=np.float64)
        self.counts = np.zeros(num_videos, dtype=np.int64)
        self.labels = np.full(num_videos, -1, dtype=np.int64)

    def update(self, scores: torch.Tensor, labels: torch.Tensor, video_index: torch.Tensor) -> None:
        index = video_index.numpy()
        np.add.at(self.sums, index, scores.double().numpy())
        np.add.at(self.counts, index, 1)
        self.labels[index] = labels.numpy()

    def scores(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)[:, None]

    def metrics(self) -> Dict[str, float]:
        seen = self.counts > 0
        return classification_metrics(self.scores()[seen], self.labels[seen])
