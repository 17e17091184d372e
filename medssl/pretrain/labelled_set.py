"""The small labelled set that the online monitors of a pre-training run look at (kNN monitor,
online linear probe, embedding picture), and the backbone's features of it."""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..data.store import SliceStore
from ..downstream.formats import medmnist


class LabelledSet(dict):
    """{"bank": (images, labels), "query": (images, labels)} (see ``load_labelled``), and
    ``class_names``: the name of each class number (``class_names[label]``)."""

    def __init__(self, sets: dict[str, tuple[torch.Tensor, torch.Tensor]], class_names: list[str]):
        super().__init__(sets)
        self.class_names = [str(name) for name in class_names]


def load_labelled(path: str | Path, intensity=None) -> LabelledSet:
    """{"bank": (images, labels), "query": (images, labels)}, images float (N, 1, H, W) in [0, 1],
    with the classes' names (``LabelledSet.class_names``).

    ``path``: a MedMNIST-style ``.npz`` (train = bank, test or val = query; the names those of the
    downstream medmnist format: the file's ``class_names``, else MedMNIST's own when the file name
    is one of its datasets, else "0".."N-1"), or a slice store whose manifest has a ``label``
    column (and optionally ``split``: train / test), mapped to [0, 1] by ``intensity``; its labels
    are numbered in the sorted order of their values, which are the names.
    """
    path = Path(path)
    if path.suffix == ".npz":
        sets = medmnist.read_npz(path, splits=None, as_grey=True)
        query = "test" if "test" in sets else "val"
        for split in ("train", query):
            if split not in sets:
                raise ValueError(f"{path}: no {split} split; expected the MedMNIST layout")
        parts = {"bank": sets["train"], "query": sets[query]}
        count = int(max(labels.max(initial=0) for _, labels in parts.values())) + 1
        return LabelledSet({name: (torch.from_numpy(images)[:, None], torch.from_numpy(labels))
                            for name, (images, labels) in parts.items()}, medmnist.class_names(path, count))
    store = SliceStore(path)
    manifest = store.manifest
    if "label" not in manifest.columns:
        raise ValueError(f"{path}: the store's manifest has no 'label' column")
    labels = manifest["label"].astype("category")
    split = (manifest["split"].to_numpy() if "split" in manifest.columns
             else np.where(np.arange(len(store)) % 2 == 0, "train", "test"))
    images = torch.stack([intensity(torch.from_numpy(store[i].astype(np.float32))[None])
                          for i in range(len(store))])
    codes = labels.cat.codes.to_numpy().astype(np.int64)
    pick = {"bank": split == "train", "query": split != "train"}
    return LabelledSet({k: (images[m], torch.from_numpy(codes[m])) for k, m in pick.items()},
                       labels.cat.categories.tolist())


# module -> ((step, labelled set), (bank, query) features): gone with the module
_SET_FEATURES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


class LabelledSetCallback(pl.Callback):
    """Base of the callbacks that look at ``data`` (see ``load_labelled``): loads it once, at
    setup, and gives the backbone's pooled features of its images.

    Features are computed in eval mode under ``no_grad``, so nothing reaches the backbone's
    gradients, BatchNorm statistics or the run's random streams. Under DDP each rank computes
    its contiguous share of the images and the shares are all-gathered: every rank ends with
    the same features of the whole set, at 1 / world size of the cost."""

    def __init__(self, data: str, batch_size: int = 256):
        self.data, self.batch_size = data, batch_size
        self.sets: LabelledSet | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(data=str(self.data))  # two monitors of two sets: two keys

    def setup(self, trainer, module, stage=None) -> None:
        if self.sets is None:
            self.sets = load_labelled(self.data, getattr(trainer.datamodule, "intensity", None))

    @property
    def num_classes(self) -> int:
        return int(max(labels.max() for _, labels in self.sets.values())) + 1

    def set_features(self, trainer, module) -> tuple[torch.Tensor, torch.Tensor]:
        """(bank features, query features) of the labelled set at this step (see ``features``).
        Monitors of the same set at the same step share one pass (kNN monitor, probe, picture).
        Every rank must call it."""
        step_key = (trainer.global_step, str(Path(self.data).resolve()))
        kept = _SET_FEATURES.get(module)
        if kept is None or kept[0] != step_key:
            (bank_x, _), (query_x, _) = self.sets["bank"], self.sets["query"]
            both = self.features(trainer, module, torch.cat([bank_x, query_x])).split([len(bank_x), len(query_x)])
            kept = _SET_FEATURES[module] = (step_key, both)  # only the latest step is kept
        return kept[1]

    @torch.no_grad()
    def features(self, trainer, module, images: torch.Tensor) -> torch.Tensor:
        """(N, D) float features of ``images`` (N, 1, H, W), on the module's device. Images are
        resized to the first view's size and normalised like it. Every rank must call it."""
        world, rank = trainer.world_size, trainer.global_rank
        if world == 1:
            return self._forward(trainer, module, images)
        share = -(-len(images) // world)
        with rank_zero_buffers(module.backbone):
            mine = self._forward(trainer, module, images[rank * share:(rank + 1) * share])
        padded = F.pad(mine, (0, 0, 0, share - len(mine)))  # all_gather wants equal shapes
        shares = [torch.empty_like(padded) for _ in range(world)]
        torch.distributed.all_gather(shares, padded)
        return torch.cat(shares)[:len(images)]

    def _forward(self, trainer, module, images: torch.Tensor) -> torch.Tensor:
        view = trainer.datamodule.views_config[0] if trainer.datamodule is not None else {}
        size, mean, std = view.get("size", 224), view.get("mean", [0.5])[0], view.get("std", [0.25])[0]
        was_training = module.backbone.training
        module.backbone.eval()
        out = [torch.zeros(0, module.feature_dim, device=module.device)]
        for batch in images.split(self.batch_size) if len(images) else ():  # a rank's share: maybe none
            batch = F.interpolate(batch.to(module.device), size=(size, size), mode="bilinear",
                                  antialias=True, align_corners=False)
            batch = ((batch - mean) / std).expand(-1, 3, -1, -1)
            out.append(module.backbone(batch).float())
        module.backbone.train(was_training)
        return torch.cat(out)


@contextmanager
def rank_zero_buffers(network: torch.nn.Module):
    """Run ``network`` with rank 0's buffers (BatchNorm statistics: without SyncBatchNorm each
    rank's drift from its own batches until DDP's next forward copies rank 0's), then put this
    rank's back: every share of the features comes from the model that rank 0 checkpoints."""
    buffers = list(network.buffers())
    own = [b.clone() for b in buffers]
    for b in buffers:
        torch.distributed.broadcast(b, src=0)
    try:
        yield
    finally:
        for b, saved in zip(buffers, own):
            b.copy_(saved)
