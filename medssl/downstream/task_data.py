"""A labelled task as every format hands it over: train / val / test splits of image files or of
in-memory arrays, the class names, and the files left out (with their reasons)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

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
        """The files left out, as ``folder/skipped_images.csv`` (file, reason); None if none."""
        if not self.skipped:
            return None
        out = Path(folder) / SKIPPED_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["file", "reason"])
        writer.writerows(self.skipped)
        atomic_write_bytes(out, text.getvalue().encode("utf-8"))  # sweep shards write it at once
        return out
