"""Your own images, one sub-folder per class; seeded stratified val and test splits. Files in the
class folders that are not images are left out and named (the rule is in ``..images``)."""
from __future__ import annotations

from pathlib import Path

from ..images import NOT_AN_IMAGE, check_images, image_kind
from ..task_data import Split, TaskData, TaskError
from .base import TaskFormat
from .checks import classes_with_images, label_indices, readable, train_val_test


def class_folders(folder: Path) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
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


def folder_images(folder: Path, progress: bool):
    """Usable (paths, class names) of a class-folder tree, its known classes, and what was
    left out."""
    folders, ignored = class_folders(folder)
    paths = [p for c in sorted(folders) for p in folders[c]]
    names = [c for c in sorted(folders) for _ in folders[c]]
    bad = check_images(paths, progress=progress)
    paths, names = readable(paths, names, bad)
    return paths, names, sorted(folders), ignored + sorted(bad.items())


def load(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2,
         seed: int = 0, progress: bool = True, **_) -> TaskData:
    root = Path(root)
    paths, names, known, skipped = folder_images(root, progress)
    classes = classes_with_images(names, root, known)
    labels = label_indices(names, classes, str(root))
    (tr, ltr), (va, lva), (te, lte) = train_val_test(paths, labels, val_fraction, test_fraction,
                                                     seed, root)
    return TaskData(root.name, classes, {"train": Split(tr, ltr), "val": Split(va, lva),
                                        "test": Split(te, lte)}, str(root), skipped=skipped)


FORMAT = TaskFormat(load)
