"""MedMNIST: one ``.npz`` holding ``{train,val,test}_images`` (uint8 (N, S, S), or (N, S, S, 3)
for colour sets) and ``{train,val,test}_labels`` ((N, 1) class numbers); any image size.

The MedMNIST files carry no class names. The reader names the classes from, in this order: a
``class_names`` array in the file (fixed-width str, written by :func:`write`; MedMNIST readers
ignore it), the MedMNIST label names of a dataset recognised by its file name
(``organsmnist_224.npz``: OrganSMNIST), or their numbers "0".."N-1"."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from ...download import fetch
from ..task_data import SPLITS, Split, TaskData, TaskError, grey
from .base import Download, Sample, TaskFormat
from .checks import classes_with_images

ARRAYS = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))
NAMES_KEY = "class_names"  # optional: the class names, a fixed-width unicode array (no pickle)
ZENODO = "https://zenodo.org/records/10519652/files"
# OrganSMNIST (MedMNIST v2 / MedMNIST+): file name and MD5 per image size.
ORGANSMNIST = {28: ("organsmnist.npz", "9ab87b696fb54e2a387ebe992d6ed5f1"),
               64: ("organsmnist_64.npz", "53a6d115339d874c25e309a994ff46d3"),
               128: ("organsmnist_128.npz", "ded0c5fa01a95dc4978b956f613e9b8e"),
               224: ("organsmnist_224.npz", "b354719e553fbbb2513d5533f52a4cb1")}

# Class names of the MedMNIST 2D single-label datasets, by class number: the "label" entries of
# INFO in MedMNIST's own medmnist/info.py (github.com/MedMNIST/MedMNIST; the same in v2.1.0 and
# v3.0.2). Left out: ChestMNIST (multi-label, not this reader's (N, 1) labels), RetinaMNIST (its
# names are the grades "0".."4") and the 3D sets (OrganMNIST3D numbers the organs otherwise).
_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
           "lung-left", "lung-right", "pancreas", "spleen")
MEDMNIST_CLASSES = {
    "organamnist": _ORGANS,
    "organcmnist": _ORGANS,
    "organsmnist": _ORGANS,
    "pathmnist": ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"),
    "dermamnist": ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": ("basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"),
    "tissuemnist": ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                    "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
                    "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"),
}
_MEDMNIST_FILE = re.compile(r"([a-z]+mnist)(?:_\d+)?")  # organsmnist, organsmnist_224


def known_dataset(path: str | Path) -> str | None:
    """The MedMNIST dataset a file is named after (``organsmnist_224.npz``: ``organsmnist``), or None."""
    match = _MEDMNIST_FILE.fullmatch(Path(path).stem.lower())
    return match.group(1) if match and match.group(1) in MEDMNIST_CLASSES else None


def read_npz(path: str | Path, splits=SPLITS, as_grey: bool = False) -> dict[str, tuple]:
    """{split: (images, labels int64 (N,))} of a MedMNIST ``.npz``: every split of ``splits``
    (TaskError names the file and the arrays it lacks), or with ``splits=None`` every split the
    file holds whole. Images as stored (uint8), or ``as_grey`` float32 (N, H, W) in [0, 1]."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        files = set(data.files)
    except (OSError, ValueError) as err:
        raise TaskError(f"{path}: not a readable .npz ({err})") from err
    if splits is None:
        splits = [s for s in SPLITS if {f"{s}_images", f"{s}_labels"} <= files]
    missing = [f"{s}_{k}" for s in splits for k in ("images", "labels") if f"{s}_{k}" not in files]
    if missing:
        raise TaskError(f"{path}: arrays {missing} missing; a MedMNIST .npz holds {list(ARRAYS)}")
    out = {}
    for split in splits:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"].reshape(-1).astype(np.int64)
        if len(images) != len(labels):
            raise TaskError(f"{path}: {split}: {len(images)} images but {len(labels)} labels")
        out[split] = (grey(images) if as_grey else images, labels)
    return out


def stored_names(path: str | Path) -> list[str] | None:
    """The ``class_names`` array of a ``.npz`` (None where it has none)."""
    with np.load(path, allow_pickle=False) as data:
        if NAMES_KEY not in data.files:
            return None
        try:
            names = data[NAMES_KEY]
        except ValueError as err:  # an object array: refused without pickle
            raise TaskError(f"{path}: {NAMES_KEY} is not an array of str ({err})") from err
    if names.ndim != 1 or names.dtype.kind != "U":
        raise TaskError(f"{path}: {NAMES_KEY} is not a 1-D array of str ({names.dtype}, shape {names.shape})")
    return names.tolist()


def class_names(path: str | Path, n_classes: int) -> list[str]:
    """The names of classes 0..n_classes-1: the file's ``class_names``, else the MedMNIST names of
    the dataset its file name says (where they number at least ``n_classes``), else "0".."N-1"."""
    stored = stored_names(path)
    if stored is not None:
        if len(stored) < n_classes:
            raise TaskError(f"{path}: {NAMES_KEY} names {len(stored)} classes but the labels go up to "
                            f"{n_classes - 1}")
        return stored[:n_classes]
    known = MEDMNIST_CLASSES.get(known_dataset(path), ())
    if len(known) >= n_classes:
        return list(known[:n_classes])
    return [str(i) for i in range(n_classes)]


def load(path: str | Path, **_) -> TaskData:
    path = Path(path)
    arrays, splits = {}, {}
    for split, (images, labels) in read_npz(path).items():
        arrays[split] = images
        splits[split] = Split(list(range(len(labels))), labels)
    n_classes = int(max(s.labels.max(initial=0) for s in splits.values())) + 1
    classes = class_names(path, n_classes)
    classes_with_images([classes[i] for i in splits["train"].labels], f"{path} (train_labels)",
                        known=classes)
    return TaskData(path.stem, classes, splits, str(path), arrays)


def write(path: Path, samples: Iterable[Sample], classes: list[str]) -> Path:
    """Samples (uint8 images of one size) as a MedMNIST ``.npz``; labels are class numbers, and
    ``classes`` their names (``class_names``, fixed-width str)."""
    images = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    for sample in samples:
        images[sample.split].append(sample.image)
        labels[sample.split].append([sample.label])
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_images"] = np.stack(images[split]).astype(np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels[split], dtype=np.uint8).reshape(-1, 1)
    arrays[NAMES_KEY] = np.asarray([str(c) for c in classes], dtype=str)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def download_organsmnist(out: Path, base_url: str | None = None, size: int = 28,
                         md5: str | None = None) -> Path:
    """OrganSMNIST at ``size`` pixels, MD5-checked (``md5`` overrides the published one)."""
    name, known = ORGANSMNIST[size]
    url = f"{base_url}/{name}" if base_url and base_url != ZENODO else f"{ZENODO}/{name}?download=1"
    fetch(url, out / name, algorithm="md5", expected=md5 or known)
    return out / name


def organsmnist_arguments(parser) -> None:
    parser.add_argument("--size", type=int, default=28, choices=sorted(ORGANSMNIST))
    parser.add_argument("--md5", help="expected MD5 (overrides the published one)")


FORMAT = TaskFormat(load, write, downloads=(
    Download("organsmnist", "OrganSMNIST", download_organsmnist, organsmnist_arguments),))
