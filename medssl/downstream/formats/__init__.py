"""The task formats: a name (``--data.kind``) for each module that reads, and where it can
writes and downloads, one layout. A new format is one module with a ``FORMAT`` and one line here."""
from __future__ import annotations

from . import brain, covid, csv_table, folder, masks, medmnist
from .base import Download, Sample, TaskFormat

FORMATS: dict[str, TaskFormat] = {
    "covid": covid.FORMAT,
    "medmnist": medmnist.FORMAT,
    "brain": brain.FORMAT,
    "folder": folder.FORMAT,
    "csv": csv_table.FORMAT,
    "masks": masks.FORMAT,
}
FAMILIES = ("classification", "segmentation")


def family(kind: str) -> str:
    """What a task of format ``kind`` asks: classification or segmentation (unknown kinds:
    classification, whose loader names the problem)."""
    return FORMATS[kind].family if kind in FORMATS else "classification"


__all__ = ["FORMATS", "FAMILIES", "family", "TaskFormat", "Sample", "Download"]
