"""Checksums of files on disk, shared by the downloader and the slice store."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path`` with a hashlib ``algorithm``, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()
