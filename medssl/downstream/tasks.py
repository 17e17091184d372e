"""Labelled datasets of the downstream tasks, read in their real layouts, checked up front.

Every loader returns a ``TaskData`` with train / val / test splits; any problem (a missing split
list, an image a list names but the folder lacks, an unreadable image, an ``.npz`` without its
arrays, a label the training split does not have) raises ``TaskError`` naming the file, before
any training starts.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from ..data.ingest.dicom import SkipItem, read_pixels
from ..data.ingest.discover import IMAGE_SUFFIXES, kind_of
from ..data.intensity import HUToIntensity

SPLITS = ("train", "val", "test")
MEDMNIST_ARRAYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))


class TaskError(ValueError):
    """Downstream data that cannot be used as it is; the message names the file."""


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
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    intensity: HUToIntensity = field(default_factory=HUToIntensity, repr=False)

    def image(self, split: str, index: int) -> np.ndarray:
        """Grey image as float32 (H, W) in [0, 1]."""
        item = self.splits[split].items[index]
        if split in self.arrays:
            image = self.arrays[split][item].astype(np.float32)
            return (image.mean(-1) if image.ndim == 3 else image) / 255.0
        return read_grey(item, self.intensity)

    def summary(self) -> str:
        counts = {s: np.bincount(sp.labels, minlength=len(self.classes)).tolist()
                  for s, sp in self.splits.items()}
        return f"{self.name} ({self.source}): classes {self.classes}; per split {counts}"


def read_grey(path: str | Path, intensity: HUToIntensity | None = None) -> np.ndarray:
    """An image file (PNG 8/16 bit, JPEG, TIFF, BMP) or a DICOM file as float32 (H, W) in
    [0, 1]; DICOM goes through the ingestion code (modality LUT) and ``intensity``."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES and kind_of(path) == "dicom":
        try:
            values = read_pixels(str(path), "CT")[0]
        except SkipItem as err:
            raise TaskError(f"{path}: unreadable DICOM image ({err})") from err
        return np.asarray((intensity or HUToIntensity())(values), dtype=np.float32)
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16") or image.mode == "I":
                values = np.asarray(image, dtype=np.float32) / 65535.0
            else:
                values = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise TaskError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    return values


def _check_images(paths) -> None:
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, UnidentifiedImageError, ValueError) as err:
            if kind_of(Path(path)) == "dicom" and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                continue  # DICOM: checked when read
            raise TaskError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err


def _labels(names: list[str], classes: list[str], where: str) -> np.ndarray:
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise TaskError(f"{where}: unknown label(s) {unknown}; the training split has {classes}")
    return np.asarray([classes.index(n) for n in names], dtype=np.int64)


def _stratified_val(paths, labels, fraction, seed, where):
    if fraction <= 0:
        return (paths, labels), ([], np.zeros(0, np.int64))
    try:
        a, b, la, lb = train_test_split(paths, labels, test_size=fraction, random_state=seed,
                                        stratify=labels)
    except ValueError as err:
        raise TaskError(f"{where}: cannot split off a stratified validation set ({err})") from err
    return (list(a), np.asarray(la)), (list(b), np.asarray(lb))


# --- the study's three tasks -------------------------------------------------------------------
def load_covid(root: str | Path, **_) -> TaskData:
    """UCSD-AI4H COVID-CT: ``Images-processed/CT_{COVID,NonCOVID}`` and the official lists
    ``Data-split/{COVID,NonCOVID}/{train,val,test}CT_{COVID,NonCOVID}.txt``. COVID = class 1."""
    root = Path(root)
    classes = ["NonCOVID", "COVID"]
    splits = {}
    for split in SPLITS:
        items, labels = [], []
        for label, name in enumerate(classes):
            listing = root / "Data-split" / name / f"{split}CT_{name}.txt"
            if not listing.is_file():
                raise TaskError(f"{listing}: split list missing (expected the UCSD-AI4H COVID-CT "
                                "layout: Images-processed/ and Data-split/)")
            folder = root / "Images-processed" / f"CT_{name}"
            for line in listing.read_text().split("\n"):
                if not line.strip():
                    continue
                path = folder / line.strip()
                if not path.is_file():
                    raise TaskError(f"{listing}: lists {line.strip()!r}, which is not in {folder}")
                items.append(str(path))
                labels.append(label)
        _check_images(items)
        splits[split] = Split(items, np.asarray(labels, dtype=np.int64))
    return TaskData("covid", classes, splits, str(root))


def load_medmnist(path: str | Path, **_) -> TaskData:
    """A MedMNIST ``.npz`` (OrganSMNIST, OrganAMNIST, OrganCMNIST, ... any size)."""
    path = Path(path)
    try:
        data = np.load(path)
        files = set(data.files)
    except (OSError, ValueError) as err:
        raise TaskError(f"{path}: not a readable .npz ({err})") from err
    missing = [k for k in MEDMNIST_ARRAYS if k not in files]
    if missing:
        raise TaskError(f"{path}: arrays {missing} missing; a MedMNIST .npz holds {list(MEDMNIST_ARRAYS)}")
    arrays, splits = {}, {}
    for split in SPLITS:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1).astype(np.int64)
        if len(images) != len(labels):
            raise TaskError(f"{path}: {split}: {len(images)} images but {len(labels)} labels")
        arrays[split] = images
        splits[split] = Split(list(range(len(labels))), labels)
    n_classes = int(max(s.labels.max(initial=0) for s in splits.values())) + 1
    return TaskData(path.stem, [str(i) for i in range(n_classes)], splits, str(path), arrays)


def _class_folders(folder: Path) -> dict[str, list[str]]:
    if not folder.is_dir():
        raise TaskError(f"{folder}: folder missing")
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(str(f) for f in sub.iterdir() if f.is_file() and not f.name.startswith("."))
        if files:
            out[sub.name] = files
    if not out:
        raise TaskError(f"{folder}: no class sub-folders with images")
    return out


def load_brain(root: str | Path, val_fraction: float = 0.15, seed: int = 0, **_) -> TaskData:
    """``train/{class...}`` and ``test/{class...}`` folders; a seeded stratified validation split
    is taken from train (the study's brain-hemorrhage layout)."""
    root = Path(root)
    train = _class_folders(root / "train")
    classes = sorted(train)
    paths = [p for c in classes for p in train[c]]
    labels = np.asarray([i for i, c in enumerate(classes) for _ in train[c]], dtype=np.int64)
    (tr, ltr), (va, lva) = _stratified_val(paths, labels, val_fraction, seed, root / "train")
    test = _class_folders(root / "test")
    test_paths = [p for c in sorted(test) for p in test[c]]
    test_labels = _labels([c for c in sorted(test) for _ in test[c]], classes, str(root / "test"))
    _check_images(paths + test_paths)
    return TaskData("brain", classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                      "test": Split(test_paths, test_labels)}, str(root))


# --- your own data ------------------------------------------------------------------------------
def load_folder(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
                seed: int = 0, **_) -> TaskData:
    """One sub-folder per class; seeded stratified val and test splits."""
    root = Path(root)
    folders = _class_folders(root)
    classes = sorted(folders)
    paths = [p for c in classes for p in folders[c]]
    labels = np.asarray([i for i, c in enumerate(classes) for _ in folders[c]], dtype=np.int64)
    _check_images(paths)
    (rest, lrest), (te, lte) = _stratified_val(paths, labels, test_fraction, seed, root)
    (tr, ltr), (va, lva) = _stratified_val(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9),
                                           seed, root)
    return TaskData(root.name, classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                        "test": Split(te, lte)}, str(root))


def load_csv(path: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
             seed: int = 0, **_) -> TaskData:
    """A CSV with columns ``path,label[,split]`` (paths relative to the CSV's folder allowed);
    without a split column, seeded stratified splits are made."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: CSV file missing")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise TaskError(f"{path}: needs a header with the columns path,label[,split]")
    files = []
    for n, row in enumerate(rows, start=2):
        file = Path(row["path"])
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise TaskError(f"{path}: line {n}: image {row['path']!r} not found")
        files.append(str(file))
    _check_images(files)
    names = [r["label"] for r in rows]
    if "split" not in rows[0]:
        classes = sorted(set(names))
        labels = _labels(names, classes, str(path))
        (rest, lrest), (te, lte) = _stratified_val(files, labels, test_fraction, seed, path)
        (tr, ltr), (va, lva) = _stratified_val(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9),
                                               seed, path)
        splits = {"train": Split(tr, ltr), "val": Split(va, lva), "test": Split(te, lte)}
    else:
        bad = sorted({r["split"] for r in rows} - set(SPLITS))
        if bad:
            raise TaskError(f"{path}: unknown split value(s) {bad}; use train, val, test")
        classes = sorted({n for r, n in zip(rows, names) if r["split"] == "train"})
        splits = {}
        for split in SPLITS:
            pick = [i for i, r in enumerate(rows) if r["split"] == split]
            splits[split] = Split([files[i] for i in pick],
                                  _labels([names[i] for i in pick], classes, f"{path} ({split} rows)"))
    return TaskData(path.stem, classes, splits, str(path))


LOADERS = {"covid": load_covid, "medmnist": load_medmnist, "brain": load_brain,
           "folder": load_folder, "csv": load_csv}


def load_task(kind: str, path: str | Path, **options) -> TaskData:
    if kind not in LOADERS:
        raise TaskError(f"unknown task kind {kind!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[kind](path, **options)
