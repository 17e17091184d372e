"""What the ingestion tests share: a run through the API and its errors report."""
import csv
from pathlib import Path

from medssl.data import SliceStore
from medssl.data.ingest import Options, ingest


def errors_of(store_path):
    with open(Path(store_path) / "ingest_errors.csv") as f:
        return list(csv.DictReader(f))


def run_ingest(inputs, out, workers=1, **options):
    summary, _, _ = ingest(inputs, out, Options(**options), workers=workers, progress=False)
    return summary, SliceStore(out)
