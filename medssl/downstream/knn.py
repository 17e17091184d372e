"""The project's one k-nearest-neighbour classifier, used by the pre-training kNN monitor and by
the downstream ``knn`` mode.

The weighted vote of Wu et al. (2018), the usual kNN evaluation of self-supervised features
(lightly's ``knn_predict``): the ``k`` bank features with the highest cosine similarity to a
query vote for their labels, each with weight ``exp(similarity / temperature)``; the normalised
votes are the class probabilities and the prediction is the most probable class.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

K = 20
TEMPERATURE = 0.1


def _vote(cosine_distances: np.ndarray, temperature: float) -> np.ndarray:
    return np.exp((1.0 - cosine_distances) / temperature)  # cosine distance = 1 - similarity


class KNN:
    """The classifier of ``bank`` (N, D) features labelled ``labels`` (N,) over ``num_classes``."""

    def __init__(self, bank: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int = K,
                 temperature: float = TEMPERATURE):
        self.num_classes = num_classes
        self.classifier = KNeighborsClassifier(min(k, len(labels)), metric="cosine", algorithm="brute",
                                               weights=partial(_vote, temperature=temperature))
        self.classifier.fit(bank.detach().float().cpu().numpy(), labels.cpu().numpy())

    def probabilities(self, query: torch.Tensor) -> torch.Tensor:
        """(M, num_classes) normalised votes for ``query`` (M, D), on ``query``'s device."""
        seen = self.classifier.predict_proba(query.detach().float().cpu().numpy())
        probs = torch.zeros(len(query), self.num_classes)
        probs[:, torch.as_tensor(self.classifier.classes_)] = torch.as_tensor(seen, dtype=torch.float32)
        return probs.to(query.device)

    def predict(self, query: torch.Tensor) -> torch.Tensor:
        return self.probabilities(query).argmax(1)
