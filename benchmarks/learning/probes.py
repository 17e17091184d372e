"""Frozen features for the learning benchmarks: a backbone's (or random init's) features of the
phantom tasks, fed as in its pre-training, and their test accuracy by the kNN vote and the
linear probe on few labelled images per class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.learning import ALL, PROBES


def input_of(checkpoint: str | None, config: Path | None = None):
    """The ``InputMapping`` the backbone saw in pre-training (random init: its pre-training
    ``config``'s, so that a pair differs in the weights only)."""
    from medssl.checkpoints import read_input
    from medssl.data.input_mapping import InputMapping

    if checkpoint is not None:
        return read_input(checkpoint)[0]
    data = yaml.safe_load(config.read_text())["data"]
    return InputMapping.of_pretraining(data.get("intensity"), data["views"][0])


@torch.no_grad()
def features(checkpoint: str | None, arch: str, task, mapping, init_seed: int = 0) -> dict:
    """{split: (L2-normalised pooled features, labels)} of a frozen backbone (eval mode), the
    images fed as ``mapping`` says, at its size. Random init (no checkpoint) draws its weights
    with ``init_seed``."""
    from torch.utils.data import DataLoader

    from medssl.downstream.datamodule import TaskImages
    from medssl.downstream.finetune import FineTune

    torch.manual_seed(init_seed)
    model = FineTune(len(task.classes), checkpoint=checkpoint, arch=arch).eval()
    out = {}
    for split in ("train", "val", "test"):
        data = TaskImages(task, split, range(len(task.splits[split])), mapping.size, False, mapping)
        feats = [model.features(x) for x, _ in DataLoader(data, batch_size=128)]
        out[split] = (torch.cat(feats).numpy(), task.splits[split].labels.astype(np.int64))
    return out


def all_features(feats: dict) -> np.ndarray:
    return np.concatenate([feats[split][0] for split in feats])


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of centred features: how many directions
    they use (a collapsed representation uses few)."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p + 1e-12)).sum()))


def scores(feats: dict, num_classes: int, labels: list[int], seeds: list[int]) -> dict:
    """{probe: {labels per class: [test accuracy per seed]}}."""
    from medssl.downstream.knn import KNN
    from medssl.downstream.linear_probe import LinearProbe
    from medssl.downstream.subsets import per_class_subsets

    (xtr, ytr), val, (xte, yte) = feats["train"], feats["val"], feats["test"]
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    out = {probe: {} for probe in PROBES}
    for n in labels:
        for seed in seeds[:1] if n == ALL else seeds:  # every seed would pick the same images
            pick = np.arange(len(ytr)) if n == ALL else per_class_subsets(ytr, [n], seed)[n]
            x, y = xtr[pick], torch.from_numpy(ytr[pick])
            knn = KNN(x, y, num_classes).predict(xte).numpy()
            linear = LinearProbe(x, y, num_classes, val=val).predict(xte).numpy()
            out["knn"].setdefault(n, []).append(float((knn == yte).mean()))
            out["linear"].setdefault(n, []).append(float((linear == yte).mean()))
    return out
