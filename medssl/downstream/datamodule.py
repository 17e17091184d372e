"""The data side of fine-tuning: a task's images at a training fraction, as Lightning loaders,
fed to the backbone the way it was fed in pre-training (``medssl.data.input_mapping``)."""
from __future__ import annotations

import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from torchvision import tv_tensors
from torchvision.transforms import v2 as T
from tqdm.auto import tqdm

from ..checkpoints import read_input
from ..data.input_mapping import DEFAULT, InputMapping
from .subsets import nested_subsets, per_class_subsets, stratified_order
from .task_data import SegmentationData
from .tasks import TaskData, load_task

CLASSIFICATION_BATCH, SEGMENTATION_BATCH = 64, 8  # images per step when the data option is unset


class InputMappingWarning(UserWarning):
    """Fine-tuning feeds a backbone otherwise than it was pre-trained."""


class TaskImages(Dataset):
    """(image (3, size, size) normalised, label) for the chosen items of one split."""

    def __init__(self, task: TaskData, split: str, indices, size: int, augment: bool,
                 mapping: InputMapping = DEFAULT):
        self.task, self.split, self.indices, self.mapping = task, split, np.asarray(indices), mapping
        steps = [T.Resize((size, size), antialias=True)]
        if augment:  # light: small shifts, rotations and flips
            steps += [T.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05)),
                      T.RandomHorizontalFlip()]
        self.transform = T.Compose(steps + [T.Normalize([mapping.mean], [mapping.std])])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        image = torch.from_numpy(self.task.image(self.split, index, self.mapping))[None]
        return self.transform(image).expand(3, -1, -1), int(self.task.splits[self.split].labels[index])


class SegmentationSlices(Dataset):
    """(image (3, size, size) normalised, class numbers (size, size), patient number) for the
    chosen slices of one split of a segmentation task. The slices are read once, here, at the
    network's size (masks by nearest neighbour); augmentation (small shifts, rotations and
    scalings, never flips: a flipped slice is another anatomy) moves image and mask together."""

    def __init__(self, task: SegmentationData, split: str, indices, size: int, augment: bool,
                 mapping: InputMapping = DEFAULT, progress: bool = False):
        self.mapping, images, masks = mapping, [], []
        items = task.splits[split].items
        patients = task.splits[split].patients
        self.patients = torch.tensor([patients.index(items[int(i)].patient) for i in indices], dtype=torch.long)
        for i in tqdm(indices, desc=f"reading {split} slices", unit="slice", disable=not progress):
            image = torch.from_numpy(task.image(split, int(i), mapping))[None]
            mask = torch.from_numpy(task.mask(split, int(i)))[None]
            images.append(T.functional.resize(image, [size, size], antialias=True))
            masks.append(T.functional.resize(mask, [size, size], interpolation=T.InterpolationMode.NEAREST_EXACT))
        self.images = torch.stack(images) if images else torch.zeros(0, 1, size, size)
        self.masks = torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, 1, size, size, dtype=torch.uint8)
        self.augment = T.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05)) if augment else None
        self.normalise = T.Normalize([mapping.mean], [mapping.std])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        image, mask = tv_tensors.Image(self.images[i]), tv_tensors.Mask(self.masks[i])
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return (self.normalise(image.as_subclass(torch.Tensor)).expand(3, -1, -1),
                mask.as_subclass(torch.Tensor)[0].long(), self.patients[i])


class NoSingleTail(BatchSampler):
    """Batches of ``batch_size``; a last batch of one joins the batch before it (BatchNorm
    cannot train on one image at small feature maps)."""

    def __iter__(self):
        pending = None
        for batch in super().__iter__():
            if pending is not None and len(batch) == 1:
                batch = pending + batch
            elif pending is not None:
                yield pending
            pending = batch
        if pending is not None:
            yield pending

    def __len__(self) -> int:
        n = super().__len__()
        return n - 1 if n > 1 and not self.drop_last and len(self.sampler) % self.batch_size == 1 else n


class TaskDataModule(pl.LightningDataModule):
    """A task (``kind``: covid, medmnist, brain, folder, csv; masks for segmentation) at a
    training fraction.

    ``fraction`` and ``seed`` pick a stratified, nested subset of the training split (at least
    ``min_per_class`` images per class); ``per_class`` (instead of ``fraction``) picks that many
    images of each class, prefixes of the same seeded order; val and test stay whole. In a
    segmentation task the fraction is one of the training patients (at least one; stratified
    by whether a patient shows the rarest class), with all their slices. ``val_fraction`` and
    ``test_fraction`` size the seeded splits of the tasks that have none of their own.

    Images go to the network as the backbone was fed in pre-training: ``backbone`` is its file
    (the fine-tune command sets it from ``model.checkpoint``; None: random initialisation, the
    project default), whose recorded mapping ``input_mapping`` reads. ``intensity``
    (``HUToIntensity`` keyword arguments), ``mean`` and ``std`` replace the backbone's values
    (None: keep them), with an ``InputMappingWarning`` where they differ.

    Args:
        kind: the task's layout: covid, medmnist, brain, folder or csv; masks (segmentation).
        path: the task's folder or file.
        image_size: side the images are resized to.
        batch_size: images per step; unset: 64, and 8 slices in a segmentation task (a few
            patients' slices make several steps an epoch: the decoder starts from scratch).
        fraction: share of the training split used (stratified, nested per seed); of its patients
            in a segmentation task.
        seed: the subset's and the run's seed.
        min_per_class: training images per class at least, whatever the fraction.
        per_class: that many training images of each class, instead of a fraction.
        patients: that many training patients of a segmentation task, instead of a fraction.
        augment: light augmentation (small shifts, rotations, flips) of training images.
        num_workers: DataLoader worker processes.
        val_fraction: validation share, for tasks without a validation split of their own.
        test_fraction: test share, for tasks without a test split of their own.
        mean: input normalisation mean; null: the backbone's recorded one.
        std: input normalisation std; null: the backbone's recorded one.
        intensity: HU windowing of DICOM inputs (HUToIntensity arguments); null: the backbone's.
        backbone: the backbone file whose input mapping is used (set from model.checkpoint).
        trust_backbone: run that file's pickled code (set from model.trust_checkpoint).
    """

    def __init__(self, kind: str, path: str, image_size: int = 224, batch_size: int | None = None,
                 fraction: float = 1.0, seed: int = 0, min_per_class: int = 2,
                 per_class: int | None = None, patients: int | None = None, augment: bool = False, num_workers: int = 4,
                 val_fraction: float = 0.15, test_fraction: float = 0.2, mean: float | None = None,
                 std: float | None = None, intensity: dict | None = None, backbone: str | None = None,
                 trust_backbone: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.task: TaskData | SegmentationData | None = None
        self._mapping: InputMapping | None = None
        self._slices: dict[tuple[str, bool], SegmentationSlices] = {}
        try:  # a bad value fails here, before any task or checkpoint is read
            DEFAULT.replaced(intensity, mean, std)
        except ValueError as err:
            raise ValueError(f"data options intensity / mean / std: {err}") from err
        if patients is not None and (patients < 1 or fraction != 1.0 or per_class is not None):
            raise ValueError(f"data option patients {patients}: give a count of at least 1, and no fraction or "
                             f"per_class beside it (fraction is {fraction}, per_class {per_class})")
        if per_class is not None and (per_class < 1 or fraction != 1.0):
            raise ValueError(f"data option per_class {per_class}: give a count of at least 1, and no fraction "
                             f"beside it (fraction is {fraction})")

    def load(self) -> TaskData:
        """Read and check the task (every problem is an error here, before training)."""
        if self.task is None:
            h = self.hparams
            self.task = load_task(h.kind, h.path, val_fraction=h.val_fraction,
                                  test_fraction=h.test_fraction, seed=h.seed)
            if self.segmentation:
                self.train_indices = self._patient_subset()
                return self.task
            if h.patients is not None:
                raise ValueError(f"data option patients: {h.path} is a classification task; its training subsets are "
                                 "a fraction (data option fraction) or images per class (data option per_class)")
            train = self.task.splits["train"].labels
            self.train_indices = (per_class_subsets(train, [h.per_class], h.seed)[h.per_class] if h.per_class
                                  else nested_subsets(train, [h.fraction], h.seed, h.min_per_class)[h.fraction])
        return self.task

    @property
    def segmentation(self) -> bool:
        return isinstance(self.load() if self.task is None else self.task, SegmentationData)

    def _patient_subset(self) -> np.ndarray:
        """The training slices of a nested, seeded subset of the training patients: the first
        ``patients``, or a ``fraction`` of them (at least one), of an order that keeps the
        strata's proportions in every prefix."""
        h, split = self.hparams, self.task.splits["train"]
        if h.per_class is not None:
            raise ValueError(f"data option per_class: {h.path} is a segmentation task; its training subsets are "
                             "fractions of the patients (data option fraction) or a count (data option patients)")
        patients = split.patients
        order = stratified_order([self.task.strata.get(p, 0) for p in patients], h.seed)
        if h.patients is not None and h.patients > len(patients):
            raise ValueError(f"data option patients {h.patients}: {h.path} has {len(patients)} training patients")
        count = h.patients if h.patients is not None else max(1, int(round(h.fraction * len(patients))))
        self.train_patients = sorted(patients[i] for i in order[:count])
        chosen = set(self.train_patients)
        return np.asarray([i for i, pair in enumerate(split.items) if pair.patient in chosen], dtype=np.int64)

    @property
    def batch_size(self) -> int:
        """Images per step: the data option, else the task family's default."""
        if self.hparams.batch_size is not None:
            return self.hparams.batch_size
        return SEGMENTATION_BATCH if self.segmentation else CLASSIFICATION_BATCH

    @property
    def n_train(self) -> int:
        """Training images, or training patients in a segmentation task."""
        self.load()
        return len(self.train_patients) if self.segmentation else len(self.train_indices)

    def input_mapping(self) -> InputMapping:
        """The backbone's mapping with the values set here; logged (one line) when first asked."""
        if self._mapping is None:
            h = self.hparams
            recorded, origin = (read_input(h.backbone, h.trust_backbone) if h.backbone
                                else (DEFAULT, "random initialisation: the project default"))
            self._mapping = recorded.replaced(h.intensity, h.mean, h.std)
            told = {name: (getattr(recorded, name), getattr(self._mapping, name))
                    for name in ("intensity", "mean", "std") if h[name] is not None}
            differ = {name: pair for name, pair in told.items() if pair[0] != pair[1]}
            if differ and h.backbone:  # random init was not pre-trained: nothing to differ from
                warnings.warn("the data options feed the backbone otherwise than it was pre-trained: "
                              + "; ".join(f"{n} {new} instead of {old}" for n, (old, new) in differ.items())
                              + f" ({origin})", InputMappingWarning, stacklevel=2)
            changed = f", {', '.join(told)} set by the data options" if told else ""
            rank_zero_info(f"input mapping ({origin}{changed}): {self._mapping.describe()}")
        return self._mapping

    @property
    def num_classes(self) -> int:
        return len(self.load().classes)

    def setup(self, stage=None) -> None:
        self.load()
        self.input_mapping()  # read (and logged) before the first batch
        trainer = self.trainer
        if trainer is not None and trainer.loggers:  # the files left out, listed next to the results
            folder = trainer.log_dir  # called by every process: it may synchronise them
            if folder and trainer.is_global_zero:
                self.task.write_skipped(folder)

    def _loader(self, split, indices, train):
        h = self.hparams
        if self.segmentation:  # read once per split: the slices are held in memory at the network's size
            key = (split, train)
            if key not in self._slices:
                self._slices[key] = SegmentationSlices(self.task, split, indices, h.image_size, h.augment and train,
                                                       self.input_mapping())
            data = self._slices[key]
        else:
            data = TaskImages(self.task, split, indices, h.image_size, h.augment and train, self.input_mapping())
        common = dict(num_workers=h.num_workers, persistent_workers=h.num_workers > 0,
                      pin_memory=torch.cuda.is_available())
        if train:
            return DataLoader(data, batch_sampler=NoSingleTail(RandomSampler(data), self.batch_size, False),
                              **common)
        return DataLoader(data, batch_size=self.batch_size, **common)

    def train_dataloader(self):
        return self._loader("train", self.train_indices, True)

    def val_dataloader(self):
        return self._loader("val", range(len(self.task.splits["val"])), False)

    def test_dataloader(self):
        return self._loader("test", range(len(self.task.splits["test"])), False)
