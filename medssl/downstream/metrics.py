"""Classification metrics of the downstream runs (torchmetrics: batched, DDP-synchronised)."""
from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassAUROC, MulticlassConfusionMatrix,
                                         MulticlassF1Score, MulticlassPrecision, MulticlassRecall,
                                         BinaryAUROC)


class ClassificationMetrics(torch.nn.Module):
    """accuracy, balanced accuracy, AUC (binary: of class 1; else macro one-vs-rest), F1,
    precision and recall (macro), and the confusion matrix, from class probabilities."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        c = num_classes
        self.scores = MetricCollection({
            "accuracy": MulticlassAccuracy(c, average="micro"),
            "balanced_accuracy": MulticlassRecall(c, average="macro"),
            "f1_macro": MulticlassF1Score(c, average="macro"),
            "precision": MulticlassPrecision(c, average="macro"),
            "recall": MulticlassRecall(c, average="macro"),
        })
        self.auc = BinaryAUROC() if c == 2 else MulticlassAUROC(c, average="macro")
        self.confusion = MulticlassConfusionMatrix(c)

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.scores.update(probs, target)
        self.auc.update(probs[:, 1] if self.num_classes == 2 else probs, target)
        self.confusion.update(probs, target)

    def compute(self) -> dict:
        out = {k: float(v) for k, v in self.scores.compute().items()}
        out["auc"] = float(self.auc.compute())
        out["confusion"] = self.confusion.compute().tolist()
        return out

    def reset(self) -> None:
        self.scores.reset()
        self.auc.reset()
        self.confusion.reset()
