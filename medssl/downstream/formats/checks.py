"""Checks and splits every format shares: classes with images, labels, stratified splits."""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from sklearn.model_selection import train_test_split

from ..task_data import SkippedFilesWarning, TaskError


def readable(paths: list[str], labels: list, bad: dict[str, str]) -> tuple[list[str], list]:
    """The paths (and their labels) that are not in ``bad``."""
    keep = [i for i, p in enumerate(paths) if p not in bad]
    return [paths[i] for i in keep], [labels[i] for i in keep]


def classes_with_images(names: list[str], where, known=()) -> list[str]:
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


def label_indices(names: list[str], classes: list[str], where: str) -> np.ndarray:
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise TaskError(f"{where}: unknown label(s) {unknown}; the training split has {classes}")
    return np.asarray([classes.index(n) for n in names], dtype=np.int64)


def stratified_split(items, labels, fraction, seed, where):
    """(rest, split off): ``fraction`` of the items, stratified by label and seeded."""
    if fraction <= 0:
        return (items, labels), ([], np.zeros(0, np.int64))
    try:
        a, b, la, lb = train_test_split(items, labels, test_size=fraction, random_state=seed,
                                        stratify=labels)
    except ValueError as err:
        raise TaskError(f"{where}: cannot split off a stratified validation set ({err})") from err
    return (list(a), np.asarray(la)), (list(b), np.asarray(lb))


def train_val_test(items, labels, val_fraction, test_fraction, seed, where):
    """Seeded stratified test and validation splits (fractions of all items)."""
    (rest, lrest), (te, lte) = stratified_split(items, labels, test_fraction, seed, where)
    (tr, ltr), (va, lva) = stratified_split(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9),
                                            seed, where)
    return (tr, ltr), (va, lva), (te, lte)
