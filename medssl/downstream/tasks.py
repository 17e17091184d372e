"""Labelled datasets of the downstream tasks, read in their real layouts, checked up front.

``load_task(kind, path)`` hands the path to the format registered as ``kind`` (``formats``),
which returns a ``TaskData`` with train / val / test splits. Every image is decoded once before
training; one that fails (truncated, corrupt, a possible decompression bomb) is left out and
named, with its reason, in ``TaskData.skipped``, as are the files in class folders that are not
images (the rule is in ``images``). Problems with the task itself (a missing split list, an image
a list names but the folder lacks, an ``.npz`` without its arrays, a label the training split
does not have, fewer than two classes) raise ``TaskError`` naming the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from .formats import FORMATS
from .task_data import SKIPPED_FILE, SkippedFilesWarning, Split, TaskData, TaskError

__all__ = ["TaskError", "TaskData", "Split", "SkippedFilesWarning", "load_task", "FORMATS"]

WARN_AT_MOST = 20  # files named in the warning; TaskData.skipped and SKIPPED_FILE hold them all


def skipped_message(task: TaskData) -> str:
    lines = [f"  {file}: {reason}" for file, reason in task.skipped[:WARN_AT_MOST]]
    if len(task.skipped) > WARN_AT_MOST:
        lines.append(f"  ... and {len(task.skipped) - WARN_AT_MOST} more (all in {SKIPPED_FILE})")
    return (f"{task.source}: {len(task.skipped)} file(s) left out of the task, the rest is used:\n"
            + "\n".join(lines))


def load_task(kind: str, path: str | Path, **options) -> TaskData:
    """Load and check a task (``progress``: a progress bar while every image is decoded); the
    files left out are named in a ``SkippedFilesWarning`` and in ``TaskData.skipped``."""
    if kind not in FORMATS:
        raise TaskError(f"unknown task kind {kind!r}; choose one of {sorted(FORMATS)}")
    task = FORMATS[kind].load(path, **options)
    if task.skipped:
        warnings.warn(skipped_message(task), SkippedFilesWarning, stacklevel=2)
    return task
