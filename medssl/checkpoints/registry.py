"""The study's released ResNet-50 checkpoints (Google Drive ids from its README).

The same ids appear elsewhere under other labels, so the loader identifies a file by its keys,
never by its name; ``format`` here is what the keys should show. ``sha256`` is filled in once a
file's checksum is known; until then the download prints the checksum it computed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Released:
    name: str
    method: str
    gdrive_id: str
    filename: str
    format: str
    sha256: str | None = None

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?export=download&id={self.gdrive_id}"


RELEASED = {r.name: r for r in [
    Released("byol", "byol", "1eBZYl1rXkKJxz42Wu75uzb1kLg8FTv1H", "byol_study.ckpt",
             "BYOL release (Lightning, online_network.encoder)"),
    Released("swav", "swav", "11OWRzifq_BXrcFMZ13H0HwS4UGcaiAn_", "swav_study.ckpt",
             "SwAV release (Lightning, model.)"),
    Released("mocov2", "mocov2", "1hUr_6XdYxjB66ZYEGTqE7b8I88IN9a1l", "mocov2_study.ckpt",
             "MoCo release (Lightning, encoder_q)"),
    Released("spark", "spark", "1kYFS67jH9s8kAmhNyf5wlRj_Gh9vTK_H", "spark_study.pth",
             "SparK release (module)"),
]}


def checkpoint_dir() -> Path:
    """Where downloads go: $MEDSSL_CHECKPOINTS, else the repository's checkpoints/ folder."""
    env = os.environ.get("MEDSSL_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "checkpoints"


def local_path(name: str) -> Path:
    return checkpoint_dir() / RELEASED[name].filename
