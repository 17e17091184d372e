"""The task formats: a name (``--data.kind``) for each module that reads, and where it can
writes and downloads, one layout. A new format is one module with a ``FORMAT`` and one line here."""
from __future__ import annotations

from . import brain, covid, csv_table, folder, medmnist
from .base import Download, Sample, TaskFormat

FORMATS: dict[str, TaskFormat] = {
    "covid": covid.FORMAT,
    "medmnist": medmnist.FORMAT,
    "brain": brain.FORMAT,
    "folder": folder.FORMAT,
    "csv": csv_table.FORMAT,
}

__all__ = ["FORMATS", "TaskFormat", "Sample", "Download"]
