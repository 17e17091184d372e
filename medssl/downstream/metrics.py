"""Classification metrics of the downstream runs (torchmetrics: batched, DDP-synchronised),
named as in ``scores``."""
from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from .scores import ALSO_NAMED, SCORES


class ClassificationMetrics(torch.nn.Module):
    """accuracy, balanced accuracy (= macro recall), AUC (binary: of class 1; else macro
    one-vs-rest), F1 and precision (macro), and the confusion matrix, from class probabilities."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        c = num_classes
        self.scores = MetricCollection({
            "accuracy": MulticlassAccuracy(c, average="micro"),
            "balanced_accuracy": MulticlassRecall(c, average="macro"),
            "f1_macro": MulticlassF1Score(c, average="macro"),
            "precision": MulticlassPrecision(c, average="macro"),
        })
        self.auc = BinaryAUROC() if c == 2 else MulticlassAUROC(c, average="macro")
        self.confusion = MulticlassConfusionMatrix(c)

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.scores.update(probs, target)
        self.auc.update(probs[:, 1] if self.num_classes == 2 else probs, target)
        self.confusion.update(probs, target)

    def compute(self) -> dict:
        """{name: float} for every name in ``SCORES``, and ``confusion`` (a list of rows)."""
        out = {k: float(v) for k, v in self.scores.compute().items()}
        out["auc"] = float(self.auc.compute())
        out.update({alias: out[name] for alias, name in ALSO_NAMED.items()})
        out = {name: out[name] for name in SCORES}
        out["confusion"] = self.confusion.compute().tolist()
        return out

    def reset(self) -> None:
        self.scores.reset()
        self.auc.reset()
        self.confusion.reset()
