"""A labelled task as every format hands it over: train / val / test splits of image files or of
in-memory arrays, the class names, and the files left out (with their reasons). A classification
task is a ``TaskData``; a segmentation task a ``SegmentationData`` (slices paired with masks)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.input_mapping import DEFAULT, InputMapping
from ..files import atomic_write_bytes
from .images import read_grey

SPLITS = ("train", "val", "test")
SKIPPED_FILE = "skipped_images.csv"


class TaskError(ValueError):
    """Downstream data that cannot be used as it is; the message names the file."""


class SkippedFilesWarning(UserWarning):
    """Files of a task left out (unreadable images, files that are not images)."""


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or colour (N, H, W, 3) as float32 grey (N, H, W) in [0, 1]."""
    images = images.astype(np.float32)
    return (images.mean(-1) if images.ndim == 4 else images) / 255.0


@dataclass
class Split:
    items: list  # file paths (str), or row numbers into TaskData.arrays[split]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    name: str
    classes: list[str]
    splits: dict[str, Split]
    source: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # uint8 images in memory
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out

    def image(self, split: str, index: int, mapping: InputMapping = DEFAULT) -> np.ndarray:
        """Grey image as float32 (H, W) in [0, 1]; files are read as the backbone's ``mapping``
        says (``images.read_grey``), arrays divided by 255."""
        item = self.splits[split].items[index]
        if split in self.arrays:
            return grey(self.arrays[split][item:item + 1])[0]
        return read_grey(item, mapping)

    def summary(self) -> str:
        counts = {s: np.bincount(sp.labels, minlength=len(self.classes)).tolist()
                  for s, sp in self.splits.items()}
        return f"{self.name} ({self.source}): classes {self.classes}; per split {counts}"

    def write_skipped(self, folder: str | Path) -> Path | None:
        return write_skipped(self.skipped, folder)


def write_skipped(skipped: list[tuple[str, str]], folder: str | Path) -> Path | None:
    """The files left out, as ``folder/skipped_images.csv`` (file, reason); None if none."""
    if not skipped:
        return None
    out = Path(folder) / SKIPPED_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["file", "reason"])
    writer.writerows(skipped)
    atomic_write_bytes(out, text.getvalue().encode("utf-8"))  # sweep shards write it at once
    return out


@dataclass(frozen=True)
class SlicePair:
    """One labelled slice of a segmentation task: its patient, the image file, the mask file and,
    where a file holds several slices, which one (a volume's slice number, or the SOP Instance UID
    of the image a DICOM-SEG frame belongs to)."""

    patient: str
    image: str
    mask: str
    slice: int | str | None = None


@dataclass
class SegmentationSplit:
    items: list[SlicePair]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def patients(self) -> list[str]:
        """The split's patients, sorted."""
        return sorted({pair.patient for pair in self.items})


@dataclass
class SegmentationData:
    """A segmentation task: slices paired with their masks, split by patient. ``classes[i]`` is
    the name of class ``i`` (class 0, the background, included); ``values[i]`` the label value
    that stands for it in the mask files. ``read_image`` / ``read_mask`` are the format's readers
    of one pair; ``empty_masks`` counts the slices of each split whose mask is all background."""

    name: str
    classes: list[str]
    values: list[int]
    splits: dict[str, SegmentationSplit]
    source: str
    read_image: Callable = field(repr=False, default=None)
    read_mask: Callable = field(repr=False, default=None)
    strata: dict[str, int] = field(default_factory=dict)  # patient -> stratum of the patient subsets
    empty_masks: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def image(self, split: str, index: int, mapping: InputMapping = DEFAULT) -> np.ndarray:
        """Grey image as float32 (H, W) in [0, 1], mapped as the backbone's ``mapping`` says."""
        return self.read_image(self.splits[split].items[index], mapping)

    def mask(self, split: str, index: int) -> np.ndarray:
        """Class numbers (int64, (H, W)) of the slice's mask."""
        raw = self.read_mask(self.splits[split].items[index])
        lookup = np.searchsorted(self.values, raw)
        return lookup.astype(np.int64)

    def summary(self) -> str:
        parts = [f"{s}: {len(sp.patients)} patients, {len(sp)} slices ({self.empty_masks.get(s, 0)} all background)"
                 for s, sp in self.splits.items()]
        return f"{self.name} ({self.source}): classes {self.classes}; " + "; ".join(parts)

    def write_skipped(self, folder: str | Path) -> Path | None:
        return write_skipped(self.skipped, folder)
