"""Your own images listed in a CSV with the columns ``path,label[,split]`` (paths relative to the
CSV's folder allowed); without a split column, seeded stratified splits are made. Labels, splits
and paths are stripped of surrounding spaces; a UTF-8 byte-order mark is allowed."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from ..images import check_images
from ..task_data import SPLITS, Split, TaskData, TaskError
from .base import TaskFormat
from .checks import classes_with_images, label_indices, readable, train_val_test


def _rows(path: Path) -> list[tuple[int, dict]]:
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


def load(path: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
         seed: int = 0, progress: bool = True, **_) -> TaskData:
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: CSV file missing")
    rows = _rows(path)
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
    files, kept = readable(files, list(zip(names, splits_of)), bad)
    names, splits_of = [n for n, _ in kept], [s for _, s in kept]
    if not has_split:
        classes = classes_with_images(names, path, listed)
        labels = label_indices(names, classes, str(path))
        (tr, ltr), (va, lva), (te, lte) = train_val_test(files, labels, val_fraction, test_fraction,
                                                         seed, path)
        splits = {"train": Split(tr, ltr), "val": Split(va, lva), "test": Split(te, lte)}
    else:
        classes = classes_with_images([n for n, s in zip(names, splits_of) if s == "train"],
                                      f"{path} (train rows)", listed)
        splits = {}
        for split in SPLITS:
            pick = [i for i, s in enumerate(splits_of) if s == split]
            splits[split] = Split([files[i] for i in pick],
                                  label_indices([names[i] for i in pick], classes,
                                                f"{path} ({split} rows)"))
    return TaskData(path.stem, classes, splits, str(path), skipped=sorted(bad.items()))


FORMAT = TaskFormat(load)
