"""Find the DICOM, NIfTI and image files under the inputs of an ingestion run."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..dicom_pixels import looks_like_dicom
from ..images import IMAGE_SUFFIXES

NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Files that are certainly not images (annotations, notes, checksums, archives).
OTHER_SUFFIXES = {".xml", ".txt", ".json", ".csv", ".md", ".md5", ".zip", ".gz", ".tar",
                  ".pdf", ".html", ".log", ".yaml", ".yml", ".py", ".npz", ".npy", ".pkl"}


@dataclass
class Found:
    dicom: list[Path] = field(default_factory=list)
    nifti: list[Path] = field(default_factory=list)
    images: list[tuple[Path, Path]] = field(default_factory=list)  # (file, input root)
    other: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)


def kind_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == "" or looks_like_dicom(path):
        return "dicom"
    if suffix in OTHER_SUFFIXES:
        return "other"
    # Scanners write DICOM files named 1.2.840..., IM0001.001 and the like.
    return "dicom"


def discover(inputs) -> Found:
    """Walk files and folders (recursively, in sorted order) and sort them by kind. A file met
    more than once (given twice, inside a folder also given, through a symlink) counts once."""
    found = Found()
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if not item.exists():
            found.missing.append(item)
            continue
        if item.is_file():
            files = [(item, item.parent)]
        else:
            files = []
            for folder, dirs, names in os.walk(item):
                dirs.sort()
                files += [(Path(folder) / n, item) for n in sorted(names) if not n.startswith(".")]
        for path, root in files:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            kind = kind_of(path)
            if kind == "image":
                found.images.append((path, root))
            else:
                getattr(found, kind).append(path)
    return found
