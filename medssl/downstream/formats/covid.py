"""UCSD-AI4H COVID-CT: ``Images-processed/CT_{COVID,NonCOVID}/`` and the official split lists
``Data-split/{COVID,NonCOVID}/{train,val,test}CT_{COVID,NonCOVID}.txt``; COVID is class 1."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ...download import extract_zip, fetch
from ..images import check_images
from ..task_data import SPLITS, Split, TaskData, TaskError
from .base import Download, Sample, TaskFormat
from .checks import classes_with_images, readable

CLASSES = ["NonCOVID", "COVID"]
URL = "https://github.com/UCSD-AI4H/COVID-CT/raw/master"


def images_folder(root: Path, name: str) -> Path:
    return root / "Images-processed" / f"CT_{name}"


def split_list(root: Path, name: str, split: str) -> Path:
    return root / "Data-split" / name / f"{split}CT_{name}.txt"


FILES = ["Images-processed/CT_COVID.zip", "Images-processed/CT_NonCOVID.zip"] + [
    str(split_list(Path(), c, s)) for c in ("COVID", "NonCOVID") for s in SPLITS]


def load(root: str | Path, progress: bool = True, **_) -> TaskData:
    root = Path(root)
    listed = {}
    for split in SPLITS:
        items, labels = [], []
        for label, name in enumerate(CLASSES):
            listing = split_list(root, name, split)
            if not listing.is_file():
                raise TaskError(f"{listing}: split list missing (expected the UCSD-AI4H COVID-CT "
                                "layout: Images-processed/ and Data-split/)")
            folder = images_folder(root, name)
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
        items, labels = readable(items, labels, bad)
        splits[split] = Split(items, np.asarray(labels, dtype=np.int64))
    classes_with_images([CLASSES[i] for i in splits["train"].labels], root / "Data-split",
                        known=CLASSES)
    return TaskData("covid", list(CLASSES), splits, str(root), skipped=sorted(bad.items()))


def write(root: Path, samples: Iterable[Sample], classes: list[str] = CLASSES) -> Path:
    """Samples as the images of ``Images-processed/CT_<class>`` and the split lists."""
    if list(classes) != CLASSES:
        raise TaskError(f"{root}: the COVID-CT layout has the classes {CLASSES}, not {list(classes)}")
    lists = {(name, split): [] for name in CLASSES for split in SPLITS}
    for name in CLASSES:
        images_folder(root, name).mkdir(parents=True, exist_ok=True)
        split_list(root, name, "train").parent.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        if sample.split not in SPLITS:
            raise TaskError(f"{root}: the COVID-CT layout has the splits {SPLITS}, not {sample.split!r}")
        name = CLASSES[sample.label]
        lists[name, sample.split].append(sample.save(images_folder(root, name)))
    for (name, split), files in lists.items():
        split_list(root, name, split).write_text("".join(f + "\n" for f in files))
    return root


def download(out: Path, base_url: str | None = None) -> Path:
    """Images and official split lists of UCSD-AI4H COVID-CT, laid out under ``out``."""
    for rel in FILES:
        path = out / rel
        fetch(f"{base_url or URL}/{rel}", path)
        if path.suffix == ".zip":  # flattened: the archives hold CT_COVID/<image>
            extract_zip(path, path.parent / path.stem)
    return out


FORMAT = TaskFormat(load, write, downloads=(Download("covid", "COVID-CT", download),))
