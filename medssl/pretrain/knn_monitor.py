"""Online kNN monitor: how well the backbone's features separate a small labelled set."""
from __future__ import annotations

import torch

from ..downstream.knn import KNN, TEMPERATURE, K
from .labelled_set import LabelledSetCallback
from .resume import stopping_for_requeue


class KNNMonitor(LabelledSetCallback):
    """Log ``knn/accuracy`` every ``every_n_epochs`` epochs: top-1 of the project's kNN vote
    (``medssl.downstream.knn``: ``k`` neighbours, ``temperature``) of the query images against
    the bank, on the backbone's features (``LabelledSetCallback``: the images resized to the
    first view's size and normalised like it).

    Args:
        data: the labelled set (``medssl.pretrain.labelled_set.load_labelled``).
    """

    def __init__(self, data: str, k: int = K, temperature: float = TEMPERATURE, every_n_epochs: int = 1,
                 batch_size: int = 256):
        super().__init__(data, batch_size)
        self.k, self.temperature, self.every_n_epochs = k, temperature, every_n_epochs
        self.history: list[float] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or stopping_for_requeue(trainer):
            return
        (_, bank_y), (_, query_y) = self.sets["bank"], self.sets["query"]
        bank, query = self.set_features(trainer, module)
        predicted = self.predict(bank, bank_y, query, self.num_classes)
        accuracy = float((predicted.cpu() == query_y).float().mean())
        self.history.append(accuracy)
        module.log("knn/accuracy", accuracy, prog_bar=True, sync_dist=True)  # the same on every rank

    def predict(self, bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor,
                num_classes: int) -> torch.Tensor:
        return KNN(bank, bank_labels, num_classes, self.k, self.temperature).predict(query)
