"""The study's brain-hemorrhage layout: ``train/{class...}`` and ``test/{class...}`` folders; a
seeded stratified validation split is taken from train."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..task_data import Split, TaskData, TaskError
from .base import Sample, TaskFormat
from .checks import classes_with_images, label_indices, stratified_split
from .folder import folder_images

SPLITS = ("train", "test")


def load(root: str | Path, val_fraction: float = 0.15, seed: int = 0, progress: bool = True,
         **_) -> TaskData:
    root = Path(root)
    paths, names, known, skipped = folder_images(root / "train", progress)
    classes = classes_with_images(names, root / "train", known)
    labels = label_indices(names, classes, str(root / "train"))
    (tr, ltr), (va, lva) = stratified_split(paths, labels, val_fraction, seed, root / "train")
    test_paths, test_names, _, test_skipped = folder_images(root / "test", progress)
    test_labels = label_indices(test_names, classes, str(root / "test"))
    return TaskData("brain", classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                      "test": Split(test_paths, test_labels)}, str(root),
                    skipped=skipped + test_skipped)


def write(root: Path, samples: Iterable[Sample], classes: list[str]) -> Path:
    """Samples of the train and test splits as ``root/<split>/<class>/<name><suffix>``."""
    for split in SPLITS:
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
    for sample in samples:
        if sample.split not in SPLITS:
            raise TaskError(f"{root}: the brain layout has the splits {SPLITS}, not {sample.split!r}")
        sample.save(root / sample.split / classes[sample.label])
    return root


FORMAT = TaskFormat(load, write)
