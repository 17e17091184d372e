"""A sweep's results.csv: one complete row per finished run.

A row is appended whole (one write ending in a newline, then fsync), so a kill can tear at most
the last row. Reading keeps complete rows only and names every other one; :func:`repair` moves
such rows to ``<file>.torn`` so that their runs are done again.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..files import atomic_write_bytes
from .scores import SCORES, SEGMENTATION_SCORES

KEY = ["task", "checkpoint", "mode", "fraction", "seed"]
COLUMNS = KEY + ["method", "n_train", *SCORES, "epochs", "wall_s", "confusion", "classes",
                 *SEGMENTATION_SCORES, "n_test", "class_scores"]
# results.csv files written before these columns have none of them; a classification row leaves the
# segmentation scores empty and the other way round
OPTIONAL_TEXT = ("classes", "class_scores")
OPTIONAL = OPTIONAL_TEXT + SEGMENTATION_SCORES + ("n_test",)
REQUIRED = [c for c in COLUMNS if c not in OPTIONAL]
TEXT = ("task", "checkpoint", "mode", "method")
INTEGER = ("seed", "n_train", "epochs")
NUMBER = ("fraction", "wall_s")
METRIC = SCORES + SEGMENTATION_SCORES + ("n_test",)  # may be empty (NaN)


class ResultsError(ValueError):
    """A file that is not a sweep's results table."""


class TornRowWarning(UserWarning):
    """A results row that a kill or a crash left incomplete."""


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # full or read-only disk


@contextmanager
def writing(path: str | os.PathLike):
    """Re-raise a write error that does not say which file it hit (a full disk) with ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno not in WRITE_ERRORS:
            raise
        raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err


@dataclass
class Scan:
    """A results file split into its header, complete rows and incomplete rows."""

    header: bytes = b""
    columns: list[str] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    torn: list[tuple[int, str, bytes]] = field(default_factory=list)  # (line number, reason, text)


def _problem(line: bytes, columns: list[str]) -> str | None:
    """Why ``line`` is not a complete row, or None."""
    if not line.endswith(b"\n"):
        return "no line end: cut off while it was written"
    if b"\0" in line:
        return "holds NUL bytes"
    try:
        fields = next(csv.reader([line.decode("utf-8").rstrip("\r\n")]), [])
    except (UnicodeDecodeError, csv.Error) as err:
        return f"unreadable ({err})"
    if len(fields) != len(columns):
        return f"{len(fields)} fields, {len(columns)} expected"
    values = dict(zip(columns, fields))
    for name in TEXT:
        if not values[name]:
            return f"{name} is empty"
    for name, kind in [(n, int) for n in INTEGER] + [(n, float) for n in NUMBER + METRIC]:
        if name in METRIC and values.get(name, "") == "":
            continue
        try:
            kind(values[name])
        except ValueError:
            return f"{name} {values[name]!r} is not a number"
    try:
        json.loads(values["confusion"])
    except ValueError:
        return "confusion matrix is not valid JSON"
    if values.get("classes"):  # empty: no names recorded (the confusion rows are class numbers)
        try:
            names = json.loads(values["classes"])
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "classes is not a JSON list of names"
    if values.get("class_scores"):  # segmentation: Dice per class
        try:
            scores = json.loads(values["class_scores"])
        except ValueError:
            scores = None
        if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) for v in scores.values()):
            return "class_scores is not a JSON object of class names and scores"
    return None


def scan(path: str | os.PathLike) -> Scan:
    """Split ``path`` into complete and incomplete rows (a missing or empty file: no rows)."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else b""
    lines = data.splitlines(keepends=True)
    result = Scan()
    if not lines:
        return result
    if not lines[0].endswith(b"\n"):  # the first append was cut off: nothing was finished
        result.torn.append((1, "no line end: cut off while it was written", lines[0]))
        return result
    result.header = lines[0]
    result.columns = next(csv.reader([lines[0].decode("utf-8", "replace").strip()]), [])
    missing = [c for c in REQUIRED if c not in result.columns]
    if missing:
        raise ResultsError(f"{path}: not a sweep results table: its header lacks columns {missing}.")
    for number, line in enumerate(lines[1:], start=2):
        problem = _problem(line, result.columns)
        if problem is None:
            result.rows.append(line)
        else:
            result.torn.append((number, problem, line))
    return result


def _warn(path: Path, found: Scan, outcome: str) -> None:
    for number, problem, _ in found.torn:
        warnings.warn(f"{path}: row {number} is incomplete ({problem}); {outcome}.",
                      TornRowWarning, stacklevel=3)


def _frame(found: Scan) -> pd.DataFrame:
    """The rows as a table with every column of COLUMNS: ``classes`` is "" where a row (or the
    whole file, written before the column) names no classes."""
    if not found.rows:
        frame = pd.DataFrame(columns=found.columns or COLUMNS)
    else:
        frame = pd.read_csv(io.BytesIO(found.header + b"".join(found.rows)),
                            dtype={name: str for name in OPTIONAL_TEXT if name in found.columns})
    for name in OPTIONAL:
        if name in OPTIONAL_TEXT:
            frame[name] = frame[name].fillna("") if name in frame else ""
        elif name not in frame:
            frame[name] = float("nan")
    return frame


def class_names(classes, count: int) -> list[str]:
    """The names of a confusion matrix's ``count`` classes from ``classes`` values (JSON lists
    of names; "" where a run recorded none): the last list of ``count`` names, else their
    numbers "0".."count-1"."""
    for value in reversed(list(classes)):
        names = json.loads(value) if isinstance(value, str) and value else None
        if names is not None and len(names) == count:
            return [str(n) for n in names]
    return [str(i) for i in range(count)]


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """The complete rows of ``path``; each incomplete one is named in a warning and skipped."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such results file.")
    found = scan(path)
    if not found.header:
        raise ResultsError(f"{path}: the results file is empty (no header, no finished runs).")
    _warn(path, found, "skipped")
    return _frame(found)


def examples_path(folder: str | os.PathLike, checkpoint: str, fraction: float, seed: int) -> Path:
    """Where a segmentation run keeps its test examples in ``folder`` (``<task>/predictions/``):
    named by the checkpoint's file stem and a digest of its path, so that ``a/backbone.pt`` and
    ``b/backbone.pt`` keep apart."""
    checkpoint = str(checkpoint)
    name = "random" if checkpoint == "random" else (
        f"{Path(checkpoint).stem}-{hashlib.sha1(checkpoint.encode()).hexdigest()[:8]}")
    return Path(folder) / f"{name}-{fraction:g}-seed{seed}.npz"


def shard_files(path: str | os.PathLike) -> list[Path]:
    """The per-shard files of the sweep writing ``path`` (``results.shard-I-of-N.csv``)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.shard-*-of-*{path.suffix}"))


def read_sweep(path: str | os.PathLike) -> pd.DataFrame:
    """The finished runs of a sweep: ``path`` and its shards' files (``shard_files``), in that
    order (a run found twice stays twice: the report keeps its last row and says so)."""
    path = Path(path)
    sources = [p for p in [path, *shard_files(path)] if p.is_file()]
    if not sources:
        raise ResultsError(f"{path}: no such results file (nor shard files {path.stem}.shard-*-of-*{path.suffix}).")
    tables = [read_results(p) for p in sources]
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def repair(path: str | os.PathLike) -> pd.DataFrame:
    """Move the incomplete rows of ``path`` to ``<path>.torn`` (named in warnings), rewriting
    ``path`` atomically with its complete rows; return those rows."""
    path = Path(path)
    found = scan(path)
    if found.torn:
        aside = path.with_name(path.name + ".torn")
        _warn(path, found, f"moved to {aside.name} and run again")
        with writing(aside), open(aside, "ab") as f:
            f.write(b"".join(line if line.endswith(b"\n") else line + b"\n"
                             for _, _, line in found.torn))
        with writing(path.with_name(path.name + ".tmp")):
            atomic_write_bytes(path, found.header + b"".join(found.rows))
    return _frame(found)


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append ``row`` whole (a header first in a new file) and sync it to disk. A torn tail
    is cut off first; a failed write is undone, leaving the complete rows as they were."""
    path = Path(path)
    with writing(path), open(path, "ab+") as f:
        f.seek(0)
        data = f.read()
        if data and not data.endswith(b"\n"):  # a torn last row: keep only whole lines
            f.truncate(data.rfind(b"\n") + 1)
        f.seek(0, os.SEEK_END)
        start = f.tell()
        columns = scan(path).columns if start else COLUMNS
        text = pd.DataFrame([row]).reindex(columns=columns).to_csv(index=False, header=not start)
        try:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(start)
            raise
