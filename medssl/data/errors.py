"""The one error of an input that cannot be used: readers raise it, callers list it and go on.

Ingestion writes it as a row of ``ingest_errors.csv``, downstream tasks as a row of
``skipped_images.csv``; both rows are (file, reason).
"""
from __future__ import annotations


class UnreadableInput(Exception):
    """``path`` cannot be used, for ``reason``. ``path`` is None when the caller names the input
    (a series, a volume) itself."""

    def __init__(self, path, reason: str):
        super().__init__(path, reason)  # both in args: the error survives pickling
        self.path = None if path is None else str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason
