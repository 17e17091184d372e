"""Labelled datasets of the downstream tasks, read in their real layouts, checked up front.

Every loader returns a ``TaskData`` with train / val / test splits. Every image is decoded once
before training; one that fails (truncated, corrupt, a possible decompression bomb) is left out
and named, with its reason, in ``TaskData.skipped``, as are the files in class folders that are
not images (the rule is in ``images``). Problems with the task itself (a missing split list, an
image a list names but the folder lacks, an ``.npz`` without its arrays, a label the training
split does not have, fewer than two classes) raise ``TaskError`` naming the file.
"""
from __future__ import annotations

import csv
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ..data.intensity import HUToIntensity
from .images import NOT_AN_IMAGE, check_images, image_kind, read_grey

__all__ = ["TaskError", "TaskData", "Split", "load_task", "LOADERS", "read_grey"]

SPLITS = ("train", "val", "test")
MEDMNIST_ARRAYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))
SKIPPED_FILE = "skipped_images.csv"
WARN_AT_MOST = 20  # files named in the warning; TaskData.skipped and SKIPPED_FILE hold them all


class TaskError(ValueError):
    """Downstream data that cannot be used as it is; the message names the file."""


class SkippedFilesWarning(UserWarning):
    """Files of a task left out (unreadable images, files that are not images)."""


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
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out

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

    def write_skipped(self, folder: str | Path) -> Path | None:
        """The files left out, as ``folder/skipped_images.csv`` (file, reason); None if none."""
        if not self.skipped:
            return None
        out = Path(folder) / SKIPPED_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "reason"])
            writer.writerows(self.skipped)
        return out


def _readable(paths: list[str], labels: list, bad: dict[str, str]) -> tuple[list[str], list]:
    keep = [i for i, p in enumerate(paths) if p not in bad]
    return [paths[i] for i in keep], [labels[i] for i in keep]


def _classes(names: list[str], where, known=()) -> list[str]:
    """The classes that have images, sorted; a task needs at least two."""
    found = Counter(names)
    counts = {c: found[c] for c in sorted(set(known) | set(found))}
    classes = [c for c, n in counts.items() if n]
    if len(classes) < 2:
        raise TaskError(f"{where}: a task needs at least two classes with usable images; "
                        f"found {counts}")
    empty = [c for c, n in counts.items() if not n]
    if empty:
        warnings.warn(f"{where}: class(es) {empty} have no usable images and are left out",
                      SkippedFilesWarning, stacklevel=3)
    return classes


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
def load_covid(root: str | Path, progress: bool = True, **_) -> TaskData:
    """UCSD-AI4H COVID-CT: ``Images-processed/CT_{COVID,NonCOVID}`` and the official lists
    ``Data-split/{COVID,NonCOVID}/{train,val,test}CT_{COVID,NonCOVID}.txt``. COVID = class 1."""
    root = Path(root)
    classes = ["NonCOVID", "COVID"]
    listed = {}
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
        listed[split] = (items, labels)
    bad = check_images([p for items, _ in listed.values() for p in items], progress=progress)
    splits = {}
    for split, (items, labels) in listed.items():
        items, labels = _readable(items, labels, bad)
        splits[split] = Split(items, np.asarray(labels, dtype=np.int64))
    _classes([classes[i] for i in splits["train"].labels], root / "Data-split", known=classes)
    return TaskData("covid", classes, splits, str(root), skipped=sorted(bad.items()))


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
    classes = [str(i) for i in range(n_classes)]
    _classes([classes[i] for i in splits["train"].labels], f"{path} (train_labels)", known=classes)
    return TaskData(path.stem, classes, splits, str(path), arrays)


def _class_folders(folder: Path) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """{class: image files} of the sub-folders, and the (file, reason) of files that are not
    images; hidden files (.DS_Store, ...) are passed over."""
    if not folder.is_dir():
        raise TaskError(f"{folder}: folder missing")
    out, ignored = {}, []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = []
        for file in sorted(f for f in sub.iterdir() if f.is_file() and not f.name.startswith(".")):
            if image_kind(file) is None:
                ignored.append((str(file), NOT_AN_IMAGE))
            else:
                files.append(str(file))
        if files:
            out[sub.name] = files
    if not out:
        raise TaskError(f"{folder}: no class sub-folders with images")
    return out, ignored


def _folder_images(folder: Path, progress: bool):
    """Usable (paths, class names) of a class-folder tree, its known classes, and what was
    left out."""
    folders, ignored = _class_folders(folder)
    paths = [p for c in sorted(folders) for p in folders[c]]
    names = [c for c in sorted(folders) for _ in folders[c]]
    bad = check_images(paths, progress=progress)
    paths, names = _readable(paths, names, bad)
    return paths, names, sorted(folders), ignored + sorted(bad.items())


def load_brain(root: str | Path, val_fraction: float = 0.15, seed: int = 0, progress: bool = True,
               **_) -> TaskData:
    """``train/{class...}`` and ``test/{class...}`` folders; a seeded stratified validation split
    is taken from train (the study's brain-hemorrhage layout)."""
    root = Path(root)
    paths, names, known, skipped = _folder_images(root / "train", progress)
    classes = _classes(names, root / "train", known)
    labels = _labels(names, classes, str(root / "train"))
    (tr, ltr), (va, lva) = _stratified_val(paths, labels, val_fraction, seed, root / "train")
    test_paths, test_names, _, test_skipped = _folder_images(root / "test", progress)
    test_labels = _labels(test_names, classes, str(root / "test"))
    return TaskData("brain", classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                      "test": Split(test_paths, test_labels)}, str(root),
                    skipped=skipped + test_skipped)


# --- your own data ------------------------------------------------------------------------------
def load_folder(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
                seed: int = 0, progress: bool = True, **_) -> TaskData:
    """One sub-folder per class; seeded stratified val and test splits."""
    root = Path(root)
    paths, names, known, skipped = _folder_images(root, progress)
    classes = _classes(names, root, known)
    labels = _labels(names, classes, str(root))
    (rest, lrest), (te, lte) = _stratified_val(paths, labels, test_fraction, seed, root)
    (tr, ltr), (va, lva) = _stratified_val(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9),
                                           seed, root)
    return TaskData(root.name, classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                        "test": Split(te, lte)}, str(root), skipped=skipped)


def _csv_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) with header names and values stripped of surrounding spaces; a UTF-8
    byte-order mark (as spreadsheet programs write) is allowed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as err:
        raise TaskError(f"{path}: not UTF-8 text ({err}); save the CSV as UTF-8") from err
    if not rows or not {"path", "label"} <= set(rows[0][1]):
        raise TaskError(f"{path}: needs a header with the columns path,label[,split]")
    return rows


def _stripped_labels(rows: list[tuple[int, dict]], path: Path) -> list[str]:
    raw: dict[str, set[str]] = {}
    for n, row in rows:
        name = (row["label"] or "").strip()
        if not name:
            raise TaskError(f"{path}: line {n}: empty label")
        raw.setdefault(name, set()).add(row["label"])
    merged = {name: sorted(spellings) for name, spellings in raw.items() if len(spellings) > 1}
    if merged:
        warnings.warn(f"{path}: labels that differ only by surrounding spaces are one class: "
                      + "; ".join(f"{v} -> {k!r}" for k, v in sorted(merged.items())),
                      UserWarning, stacklevel=3)
    return [row["label"].strip() for _, row in rows]


def load_csv(path: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
             seed: int = 0, progress: bool = True, **_) -> TaskData:
    """A CSV with columns ``path,label[,split]`` (paths relative to the CSV's folder allowed);
    without a split column, seeded stratified splits are made. Labels, splits and paths are
    stripped of surrounding spaces."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: CSV file missing")
    rows = _csv_rows(path)
    files = []
    for n, row in rows:
        file = Path((row["path"] or "").strip())
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise TaskError(f"{path}: line {n}: image {row['path']!r} not found")
        files.append(str(file))
    names = _stripped_labels(rows, path)
    has_split = "split" in rows[0][1]
    splits_of = [(row["split"] or "").strip() for _, row in rows] if has_split else [""] * len(rows)
    bad_splits = sorted(set(splits_of) - set(SPLITS)) if has_split else []
    if bad_splits:
        raise TaskError(f"{path}: unknown split value(s) {bad_splits}; use train, val, test")
    listed = {n for n, s in zip(names, splits_of) if s in ("", "train")}
    bad = check_images(files, progress=progress)
    files, kept = _readable(files, list(zip(names, splits_of)), bad)
    names, splits_of = [n for n, _ in kept], [s for _, s in kept]
    if not has_split:
        classes = _classes(names, path, listed)
        labels = _labels(names, classes, str(path))
        (rest, lrest), (te, lte) = _stratified_val(files, labels, test_fraction, seed, path)
        (tr, ltr), (va, lva) = _stratified_val(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9),
                                               seed, path)
        splits = {"train": Split(tr, ltr), "val": Split(va, lva), "test": Split(te, lte)}
    else:
        classes = _classes([n for n, s in zip(names, splits_of) if s == "train"],
                           f"{path} (train rows)", listed)
        splits = {}
        for split in SPLITS:
            pick = [i for i, s in enumerate(splits_of) if s == split]
            splits[split] = Split([files[i] for i in pick],
                                  _labels([names[i] for i in pick], classes, f"{path} ({split} rows)"))
    return TaskData(path.stem, classes, splits, str(path), skipped=sorted(bad.items()))


LOADERS = {"covid": load_covid, "medmnist": load_medmnist, "brain": load_brain,
           "folder": load_folder, "csv": load_csv}


def skipped_message(task: TaskData) -> str:
    lines = [f"  {file}: {reason}" for file, reason in task.skipped[:WARN_AT_MOST]]
    if len(task.skipped) > WARN_AT_MOST:
        lines.append(f"  ... and {len(task.skipped) - WARN_AT_MOST} more (all in {SKIPPED_FILE})")
    return (f"{task.source}: {len(task.skipped)} file(s) left out of the task, the rest is used:\n"
            + "\n".join(lines))


def load_task(kind: str, path: str | Path, **options) -> TaskData:
    """Load and check a task (``progress``: a progress bar while every image is decoded); the
    files left out are named in a ``SkippedFilesWarning`` and in ``TaskData.skipped``."""
    if kind not in LOADERS:
        raise TaskError(f"unknown task kind {kind!r}; choose one of {sorted(LOADERS)}")
    task = LOADERS[kind](path, **options)
    if task.skipped:
        warnings.warn(skipped_message(task), SkippedFilesWarning, stacklevel=2)
    return task
