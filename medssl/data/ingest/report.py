"""The reports of ingestion runs, kept across runs: one CSV row per skipped input
(``ErrorsReport``), one per copy of a DICOM instance or slice that was not used
(``DuplicatesReport``)."""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

COLUMNS = ["run", "file", "reason"]
DUPLICATE_COLUMNS = ["run", "file", "kept", "series_uid", "instance"]


class RunReport:
    """Appends rows, stamped with this run's start time (UTC) or the ``run`` given (that of
    another report of the same run), to a CSV file with ``columns`` (the first is ``run``).

    Rows of earlier runs stay: the file is the history of every run; a run's own rows are
    those with its ``run`` value. Each row is flushed as it is written.
    """

    columns = ["run"]

    def __init__(self, path: str | Path, run: str | None = None):
        self.path = Path(path)
        self.run = run or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._upgrade_older_report()
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(self.columns)
            self._file.flush()

    def _upgrade_older_report(self) -> None:
        """Nothing to do: a report with no older layout."""

    def add(self, rows) -> None:
        self._csv.writerows([self.run, *row] for row in rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ErrorsReport(RunReport):
    """(file, reason) of every input skipped: ``ingest_errors.csv``."""

    columns = COLUMNS

    def _upgrade_older_report(self) -> None:
        """A report written without the run column: give its rows an empty run."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if rows[0] == COLUMNS:
            return
        body = rows[1:] if rows[0] == COLUMNS[1:] else rows
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows([COLUMNS] + [[""] + row for row in body])


class DuplicatesReport(RunReport):
    """(file, kept, series_uid, instance) of every copy of a DICOM instance, or slice, that was
    not used: ``ingest_duplicates.csv``. ``kept`` is the file the instance's (or slice's) pixels
    were read from and stored, empty when its series was not stored (another modality, or
    skipped: see the errors report); ``instance`` its SOPInstanceUID, or for a slice that repeats
    another of the series (same position, same values) "slice at P mm"."""

    columns = DUPLICATE_COLUMNS
