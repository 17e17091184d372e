"""The study's released ResNet-50 checkpoints (Google Drive ids published with its code).

The same ids appear elsewhere under other labels, so the loader identifies a file by its keys,
never by its name; ``format`` here is what the keys should show. ``sha256`` is filled in once a
file's checksum is known; until then the download prints the checksum it computed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .formats import CheckpointFormat

# Environment variable naming the folder that holds downloaded checkpoints.
CHECKPOINTS_ENV = "MEDSSL_CHECKPOINTS"


@dataclass(frozen=True)
class Released:
    """One released checkpoint: its short name, the method that made it, where to fetch it,
    the file name it is saved under, and the format its keys should show."""
    name: str
    method: str
    gdrive_id: str
    filename: str
    format: CheckpointFormat
    sha256: str | None = None

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?export=download&id={self.gdrive_id}"


RELEASED = {r.name: r for r in [
    Released("byol", "byol", "1eBZYl1rXkKJxz42Wu75uzb1kLg8FTv1H", "byol_study.ckpt",
             CheckpointFormat.BYOL_RELEASE),
    Released("swav", "swav", "11OWRzifq_BXrcFMZ13H0HwS4UGcaiAn_", "swav_study.ckpt",
             CheckpointFormat.SWAV_RELEASE),
    Released("mocov2", "mocov2", "1hUr_6XdYxjB66ZYEGTqE7b8I88IN9a1l", "mocov2_study.ckpt",
             CheckpointFormat.MOCO_RELEASE),
    Released("spark", "spark", "1kYFS67jH9s8kAmhNyf5wlRj_Gh9vTK_H", "spark_study.pth",
             CheckpointFormat.SPARK_RELEASE),
]}


def checkpoint_dir(folder: str | Path | None = None) -> Path:
    """Where released checkpoints are kept: ``folder`` if given, else $MEDSSL_CHECKPOINTS, else
    ``checkpoints/`` in the working directory (never a place inside the installed package)."""
    chosen = folder or os.environ.get(CHECKPOINTS_ENV)
    return Path(chosen) if chosen else Path.cwd() / "checkpoints"


def local_path(name: str, folder: str | Path | None = None) -> Path:
    """Where the released checkpoint ``name`` is (or will be, once downloaded)."""
    return checkpoint_dir(folder) / RELEASED[name].filename
