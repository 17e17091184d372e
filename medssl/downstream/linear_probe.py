"""The linear probe: the standard measure of frozen features next to the kNN vote.

A multinomial logistic regression (scikit-learn, L-BFGS, run to convergence) on standardised
backbone features. Its one setting, the inverse L2 strength ``C``, is chosen from ``C_GRID`` by
accuracy on validation features (the largest ``C`` among equals: the least regularised model
that does as well); without validation features it is 1. Unlike a head trained by SGD for a few
hundred steps, it converges on a few labelled images as on thousands.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = tuple(float(c) for c in np.logspace(-3, 2, 6))  # 0.001 ... 100
MAX_ITER = 2000


def _fit(features: np.ndarray, labels: np.ndarray, c: float):
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))
    with warnings.catch_warnings():  # the rare grid value that stops at MAX_ITER is still a fit
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, labels)


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)


class LinearProbe:
    """The probe of ``bank`` (N, D) features labelled ``labels`` (N,) over ``num_classes``;
    ``val`` = (features, labels) picks ``C`` (``self.c``; ``self.val_accuracy`` its score)."""

    def __init__(self, bank, labels, num_classes: int, val=None, grid=C_GRID):
        self.num_classes = num_classes
        x, y = _numpy(bank), _numpy(labels).astype(np.int64)
        self.c, self.val_accuracy = 1.0, float("nan")
        if val is not None and len(np.unique(y)) > 1:
            vx, vy = _numpy(val[0]), _numpy(val[1]).astype(np.int64)
            scores = [(float((_fit(x, y, c).predict(vx) == vy).mean()), c) for c in grid]
            self.val_accuracy, self.c = max(scores)
        self.model = _fit(x, y, self.c) if len(np.unique(y)) > 1 else None
        self.classes = np.unique(y)

    def probabilities(self, query) -> torch.Tensor:
        """(M, num_classes) class probabilities of ``query`` (M, D), on ``query``'s device."""
        probs = torch.zeros(len(query), self.num_classes)
        if self.model is None:  # one class seen: it is every prediction
            probs[:, int(self.classes[0])] = 1.0
        else:
            seen = self.model.predict_proba(_numpy(query))
            probs[:, torch.as_tensor(self.model.classes_)] = torch.as_tensor(seen, dtype=torch.float32)
        return probs.to(query.device) if isinstance(query, torch.Tensor) else probs

    def predict(self, query) -> torch.Tensor:
        return self.probabilities(query).argmax(1)
