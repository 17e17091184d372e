"""What a task format provides: a reader, and where it has them a writer and downloaders."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image


@dataclass
class Sample:
    """One labelled image for a writer: file stem, class index, split, uint8 pixels (H, W) or
    (H, W, 3), and how a picture file of it is saved (suffix, PIL save options)."""

    name: str
    label: int
    split: str
    image: np.ndarray
    suffix: str = ".png"
    save_options: dict = field(default_factory=dict)

    def save(self, folder: Path) -> str:
        """Save as a picture file in ``folder``; returns its file name."""
        name = f"{self.name}{self.suffix}"
        Image.fromarray(self.image).save(folder / name, **self.save_options)
        return name


@dataclass(frozen=True)
class Download:
    """A public dataset in a format: ``fetch(out, base_url=None, **options) -> path`` (None:
    the published location); ``add_arguments`` adds its options to the download command."""

    name: str
    title: str
    fetch: Callable[..., Path]
    add_arguments: Callable = lambda parser: None


@dataclass(frozen=True)
class TaskFormat:
    """``load(path, **options) -> TaskData`` (options it does not use are ignored);
    ``write(path, samples, classes) -> path`` lays labelled images out in the format. ``family``:
    what the task asks, ``classification`` (a label per image) or ``segmentation`` (a mask per
    slice, ``load`` returning a ``SegmentationData``)."""

    load: Callable
    write: Callable[[Path, Iterable[Sample], list[str]], Path] | None = None
    downloads: tuple[Download, ...] = ()
    family: str = "classification"
