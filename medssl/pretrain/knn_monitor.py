"""Online kNN monitor: how well the backbone's features separate a small labelled set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..data.store import SliceStore
from ..downstream.formats.medmnist import read_npz
from ..downstream.knn import KNN, TEMPERATURE, K


def load_labelled(path: str | Path, intensity=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"bank": (images, labels), "query": (images, labels)}, images float (N, 1, H, W) in [0, 1].

    ``path``: a MedMNIST-style ``.npz`` (train = bank, test or val = query), or a slice store
    whose manifest has a ``label`` column (and optionally ``split``: train / test), mapped to
    [0, 1] by ``intensity``.
    """
    path = Path(path)
    if path.suffix == ".npz":
        sets = read_npz(path, splits=None, as_grey=True)
        query = "test" if "test" in sets else "val"
        for split in ("train", query):
            if split not in sets:
                raise ValueError(f"{path}: no {split} split; expected the MedMNIST layout")
        return {name: (torch.from_numpy(sets[split][0])[:, None], torch.from_numpy(sets[split][1]))
                for name, split in (("bank", "train"), ("query", query))}
    store = SliceStore(path)
    manifest = store.manifest
    if "label" not in manifest.columns:
        raise ValueError(f"{path}: the store's manifest has no 'label' column")
    labels = manifest["label"].astype("category").cat.codes.to_numpy()
    split = (manifest["split"].to_numpy() if "split" in manifest.columns
             else np.where(np.arange(len(store)) % 2 == 0, "train", "test"))
    images = torch.stack([intensity(torch.from_numpy(store[i].astype(np.float32))[None])
                          for i in range(len(store))])
    pick = {"bank": split == "train", "query": split != "train"}
    return {k: (images[m], torch.from_numpy(labels[m].astype(np.int64))) for k, m in pick.items()}


class KNNMonitor(pl.Callback):
    """Log ``knn/accuracy`` every ``every_n_epochs`` epochs: top-1 of the project's kNN vote
    (``medssl.downstream.knn``: ``k`` neighbours, ``temperature``) of the query images against
    the bank, on the backbone's features. Images are resized to the first view's size and
    normalised like it."""

    def __init__(self, data: str, k: int = K, temperature: float = TEMPERATURE, every_n_epochs: int = 1,
                 batch_size: int = 256):
        self.data, self.k, self.temperature = data, k, temperature
        self.every_n_epochs, self.batch_size = every_n_epochs, batch_size
        self.sets = None
        self.history: list[float] = []

    def setup(self, trainer, module, stage=None) -> None:
        if self.sets is None:
            self.sets = load_labelled(self.data, getattr(trainer.datamodule, "intensity", None))

    @torch.no_grad()
    def features(self, module, images: torch.Tensor) -> torch.Tensor:
        view = module.trainer.datamodule.views_config[0] if module.trainer.datamodule else {}
        size, mean, std = view.get("size", 224), view.get("mean", [0.5])[0], view.get("std", [0.25])[0]
        out = []
        for batch in images.split(self.batch_size):
            batch = F.interpolate(batch.to(module.device), size=(size, size), mode="bilinear",
                                  antialias=True, align_corners=False)
            batch = ((batch - mean) / std).expand(-1, 3, -1, -1)
            out.append(F.normalize(module.backbone(batch).float(), dim=1))
        return torch.cat(out)

    def on_train_epoch_end(self, trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        was_training = module.backbone.training
        module.backbone.eval()
        bank_x, bank_y = self.sets["bank"]
        query_x, query_y = self.sets["query"]
        bank = self.features(module, bank_x)
        query = self.features(module, query_x)
        classes = int(max(bank_y.max(), query_y.max())) + 1
        predicted = self.predict(bank, bank_y, query, classes)
        accuracy = float((predicted.cpu() == query_y).float().mean())
        module.backbone.train(was_training)
        self.history.append(accuracy)
        module.log("knn/accuracy", accuracy, prog_bar=True)

    def predict(self, bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor,
                num_classes: int) -> torch.Tensor:
        return KNN(bank, bank_labels, num_classes, self.k, self.temperature).predict(query)
