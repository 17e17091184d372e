"""LightningDataModule over a slice store: memory-mapped reads, HU -> intensity, method views."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data.intensity import HUToIntensity
from ..data.store import SliceStore, StoreError
from .batch_views import BatchMultiView
from .resume import VIEW_STREAM, run_seed, step_seed
from .views import MultiView, ViewSpec

SHARED_MEMORY = "/dev/shm"

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


def shared_memory_free() -> int | None:
    """Free bytes of /dev/shm, through which DataLoader workers hand over their batches (None
    where there is none)."""
    try:
        return shutil.disk_usage(SHARED_MEMORY).free
    except OSError:
        return None


def prefetch_that_fits(batch_bytes: int, workers: int, wanted: int, processes: int, free: int | None) -> int:
    """The prefetch factor whose batches in flight (workers x prefetch x batch, for each of the
    ``processes`` training on this node) fit in half of the free shared memory: ``wanted`` if
    they fit, fewer if that is what fits; an error that says what to change if one batch per
    worker does not fit (a container's small /dev/shm otherwise ends the run with a bus error)."""
    if free is None:
        return wanted
    budget = free // 2 // max(1, processes)
    fits = budget // max(1, workers * batch_bytes)
    if fits >= wanted:
        return wanted
    if fits >= 1:
        rank_zero_warn(f"{workers} workers x {wanted} batches of {batch_bytes / 2**20:.1f} MiB in flight per process "
                       f"do not fit in half of the {free / 2**30:.1f} GiB free in {SHARED_MEMORY}; "
                       f"prefetching {fits} batches per worker instead.")
        return int(fits)
    need = workers * batch_bytes * max(1, processes) * 2
    raise ValueError(f"{SHARED_MEMORY} has {free / 2**30:.2f} GiB free; {max(1, processes)} process(es) x "
                     f"{workers} workers x one batch of {batch_bytes / 2**20:.1f} MiB need about "
                     f"{need / 2**30:.2f} GiB (with room to spare). Lower --data.num_workers or "
                     "--data.batch_size, or give the container more shared memory (docker run "
                     "--shm-size=16g; Kubernetes: an emptyDir with medium Memory at /dev/shm).")


class ResumableSampler(DistributedSampler):
    """torch's ``DistributedSampler`` (a seeded shuffle per epoch, this process's share) that
    can start a pass part-way: ``start_at(epoch, batches)`` skips what a killed run had already
    trained on, so the resumed epoch sees the rest of the same order. One process: rank 0 of 1."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def start_at(self, epoch: int, samples: int) -> None:
        self.set_epoch(epoch)
        self.skip = samples

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableLoader(DataLoader):
    """A DataLoader that knows its position: the seed, the epoch and the batches trained on in
    it (counted by the data module as batches reach the step, not as workers prefetch them)."""

    def __init__(self, dataset, sampler: ResumableSampler, **kwargs):
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.trained_batches = 0

    def __iter__(self):
        self.trained_batches = self.sampler.skip // self.batch_size
        return super().__iter__()

    def state_dict(self) -> dict:
        epoch, batches = self.sampler.epoch, self.trained_batches
        if batches >= len(self):  # the epoch is over: the next one starts from its beginning
            epoch, batches = epoch + 1, 0
        return {"seed": self.sampler.seed, "epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to do: the data module puts the position back before it builds the loader
        (Lightning builds the loader to count steps before it restores its loops, so a loader
        cannot be moved once Lightning hands it its state). Having this method tells Lightning
        that the loader is resumable."""


class SliceStoreDataModule(pl.LightningDataModule):
    """Pre-training data.

    Args:
        store: path of a slice store (see ``medssl ingest``).
        views: one dict per view kind (see ``medssl.pretrain.views.ViewSpec``), set by each method's
            config: e.g. two 224 px crops for MoCo v2, 2 x 224 + 6 x 96 for SwAV.
        intensity: keyword arguments of ``medssl.data.intensity.HUToIntensity`` (mode full,
            window, random_window or range).
        batch_size: per process (DDP multiplies it by the number of processes).
        num_workers: DataLoader worker processes; each memory-maps the shards itself.
        augment_on: where views are made: ``workers`` (per image, in the DataLoader workers),
            ``device`` (whole batches on the training device, after the int16 slices travel
            there: see ``medssl.pretrain.batch_views``), or ``auto`` = device on GPUs, else workers.

    Resuming: the order of slices is a seeded shuffle per epoch, and a resumed run goes on at
    the batch where the checkpoint was taken (``ResumableLoader``). Device views draw each
    batch's randomness from (seed, rank, epoch, batch), so a resumed run makes the very views the
    uninterrupted run would have made; views made in workers draw from the workers' streams,
    which start again from the seed when a run resumes.
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
        self.loader: ResumableLoader | None = None
        self.resume_at: dict | None = None  # a checkpoint's loader position, used once

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            self.store = SliceStore(self.store_path)
            if self.store.units != "HU" and self.intensity.mode != "range":
                raise StoreError(f"{self.store_path}: values are not HU (units={self.store.units}); "
                                 "use --data.intensity.mode range with low/high.")
            if len(self.store) < self.batch_size and self.drop_last:
                raise StoreError(f"{self.store_path}: {len(self.store)} slices, fewer than one batch of "
                                 f"{self.batch_size}: lower --data.batch_size (at most {len(self.store)}).")

    def views_on_device(self) -> bool:
        if self.augment_on != "auto":
            return self.augment_on == "device"
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if self.views_on_device():
            self.device_views = BatchMultiView(self.views_config, intensity=self.intensity)
            dataset = SliceValues(self.store)
        else:
            self.device_views = None
            dataset = SliceViews(self.store, self.intensity, MultiView(self.views_config))
        resume, self.resume_at = self.resume_at or {}, None
        sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, seed=resume.get("seed", run_seed()))
        if resume:
            sampler.start_at(resume["epoch"], resume["batches"] * self.batch_size)
        workers = self.num_workers
        prefetch = None
        if workers > 0:
            prefetch = prefetch_that_fits(self.batch_bytes(), workers, self.prefetch_factor,
                                          trainer.num_devices if trainer else 1, shared_memory_free())
        self.loader = ResumableLoader(
            dataset, sampler, batch_size=self.batch_size, drop_last=self.drop_last,
            num_workers=workers, pin_memory=self.pin_memory, persistent_workers=workers > 0,
            prefetch_factor=prefetch)
        return self.loader

    def batch_bytes(self) -> int:
        """What one batch from the workers holds: int16 slices when the views are made on the
        device, else the float32 views."""
        height, width = self.store.size
        if self.device_views is not None:
            return self.batch_size * height * width * self.store.dtype.itemsize
        specs = [ViewSpec.of(v) for v in self.views_config]
        return self.batch_size * sum(s.count * s.channels * s.size * s.size * 4 for s in specs)

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict()} if self.loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self.resume_at = state.get("loader")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        loader = self.loader
        if loader is None:
            return batch
        epoch, index = loader.sampler.epoch, loader.trained_batches
        loader.trained_batches += 1
        if self.device_views is None or not isinstance(batch, torch.Tensor):
            return batch
        return self.device_views(batch, seed=step_seed(loader.sampler.seed, loader.sampler.rank, epoch, index,
                                                      VIEW_STREAM))
