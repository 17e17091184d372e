"""LightningDataModule over a slice store: memory-mapped reads, HU -> intensity, method views."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .intensity import HUToIntensity
from .store import MANIFEST_FILE, SliceStore
from .batch_views import BatchMultiView
from .views import MultiView

AUGMENT_ON = ("auto", "workers", "device")


class SliceValues(Dataset):
    """Item i: slice i as stored, (1, H, W) int16: views are made on the device."""

    def __init__(self, store: SliceStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.store[index])[None]


class SliceViews(Dataset):
    """Item i: the list of augmented views of slice i."""

    def __init__(self, store: SliceStore, intensity: HUToIntensity, views: MultiView):
        self.store, self.intensity, self.views = store, intensity, views

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        image = self.intensity(torch.from_numpy(self.store[index].astype(np.float32))[None])
        return self.views(image)


class SliceStoreDataModule(pl.LightningDataModule):
    """Pre-training data.

    Args:
        store: path of a slice store (see ``Pre-Training/preprocess.py``).
        views: one dict per view kind (see ``medssl.data.views.ViewSpec``), set by each method's
            config: e.g. two 224 px crops for MoCo v2, 2 x 224 + 6 x 96 for SwAV.
        intensity: keyword arguments of ``medssl.data.intensity.HUToIntensity`` (mode full,
            window, random_window or range).
        batch_size: per process (DDP multiplies it by the number of processes).
        num_workers: DataLoader worker processes; each memory-maps the shards itself.
        augment_on: where views are made: ``workers`` (per image, in the DataLoader workers),
            ``device`` (whole batches on the training device, after the int16 slices travel
            there: see ``medssl.data.batch_views``), or ``auto`` = device on GPUs, else workers.
    """

    def __init__(self, store: str, views: list[dict] | None = None, intensity: dict | None = None,
                 batch_size: int = 64, num_workers: int = 4, prefetch_factor: int = 4,
                 pin_memory: bool | None = None, drop_last: bool = True, augment_on: str = "auto"):
        super().__init__()
        self.save_hyperparameters()
        self.store_path = Path(store)
        self.views_config = views or [{"size": 224, "count": 2}]
        self.intensity = HUToIntensity(**(intensity or {}))
        self.batch_size, self.num_workers = batch_size, num_workers
        self.prefetch_factor, self.drop_last = prefetch_factor, drop_last
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"augment_on must be one of {AUGMENT_ON}, not {augment_on!r}")
        self.augment_on = augment_on
        self.device_views: BatchMultiView | None = None
        self.store: SliceStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            self.store = SliceStore(self.store_path)
            if self.store.units != "HU" and self.intensity.mode != "range":
                raise ValueError(f"{self.store_path}: values are not HU (units={self.store.units}); "
                                 "use intensity mode 'range' with low/high.")
            if len(self.store) < self.batch_size and self.drop_last:
                raise ValueError(f"{self.store_path}: {len(self.store)} slices, fewer than one "
                                 f"batch of {self.batch_size}.")

    @property
    def fingerprint(self) -> str:
        """sha256 of the store's manifest: which slices a model was trained on."""
        return hashlib.sha256((self.store_path / MANIFEST_FILE).read_bytes()).hexdigest()

    def views_on_device(self) -> bool:
        if self.augment_on != "auto":
            return self.augment_on == "device"
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        self.setup()
        if self.views_on_device():
            rank = self.trainer.global_rank if self.trainer else 0
            self.device_views = BatchMultiView(self.views_config, seed=torch.initial_seed() + rank,
                                               intensity=self.intensity)
            dataset = SliceValues(self.store)
        else:
            self.device_views = None
            dataset = SliceViews(self.store, self.intensity, MultiView(self.views_config))
        workers = self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=self.drop_last,
                          num_workers=workers, pin_memory=self.pin_memory,
                          persistent_workers=workers > 0,
                          prefetch_factor=self.prefetch_factor if workers > 0 else None)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.device_views is None or not isinstance(batch, torch.Tensor):
            return batch
        return self.device_views(batch)
