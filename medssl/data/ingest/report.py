"""The errors report of ingestion runs: one CSV row per skipped input, kept across runs."""
from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

COLUMNS = ["run", "file", "reason"]


class ErrorsReport:
    """Appends (file, reason) rows, stamped with this run's start time (UTC), to a CSV file.

    Rows of earlier runs stay: the file is the history of every run; a run's own rows are
    those with its ``run`` value. Each row is flushed as it is written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.run = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._upgrade_older_report()
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
            self._file.flush()

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

    def add(self, errors) -> None:
        self._csv.writerows([self.run, file, reason] for file, reason in errors)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ErrorsReport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
