"""Ingest DICOM series, NIfTI volumes and image folders into a lossless slice store.

    medssl ingest LIDC-IDRI/ --out data/lidc_store
    medssl ingest scans/ --out store --size 256 --thin 0.9 --workers 8
    medssl ingest scans/ --dry-run

DICOM files are grouped into series by SeriesInstanceUID (wherever they lie), CT kept by default,
slices ordered along the slice normal and converted to Hounsfield units with the modality LUT.
Unreadable files and broken series are skipped and listed in STORE/ingest_errors.csv; copies
of a DICOM instance (or slice) already found, and not used, are listed in
STORE/ingest_duplicates.csv.
Interrupted? Run the same command again: finished series are kept, the rest is done.
(python Pre-Training/preprocess.py is the same command.)

Exit status: 0 all ingested; 2 finished, but some inputs were skipped (see the errors report);
1 the run could not start or the store is unusable; 130 interrupted (run again to resume).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..data import StoreError
from ..data.ingest import DEFAULT_THRESHOLD, IngestError, Options, ingest
from ..exits import signal_status


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path, help="files or folders (searched recursively)")
    ap.add_argument("--out", type=Path, help="slice store to write (required unless --dry-run)")
    ap.add_argument("--size", type=int, default=256, help="slice size N (N x N), default 256")
    ap.add_argument("--modality", nargs="+", default=["CT"],
                    help="DICOM modalities to keep (default CT; e.g. --modality MR)")
    ap.add_argument("--clip", nargs=2, type=int, metavar=("LOW", "HIGH"),
                    help="clip values to this range (recorded in the store), e.g. -1024 3071")
    ap.add_argument("--thin", type=float, nargs="?", const=DEFAULT_THRESHOLD, metavar="SSIM",
                    help="drop near-duplicate neighbours: keep a slice only if its SSIM to the last "
                         f"kept slice of its series is below SSIM (default {DEFAULT_THRESHOLD})")
    ap.add_argument("--nifti-modality", default="CT", help="modality assumed for NIfTI (default CT)")
    ap.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    ap.add_argument("--errors", type=Path, help="errors report (default STORE/ingest_errors.csv)")
    ap.add_argument("--overwrite", action="store_true", help="start the store afresh")
    ap.add_argument("--dry-run", action="store_true", help="list what would be ingested, write nothing")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    ap = parser(prog)
    args = ap.parse_args(argv)
    if not args.dry_run and args.out is None:
        ap.error("--out is required (or use --dry-run)")
    options = Options(size=args.size, modalities=tuple(m.upper() for m in args.modality),
                      clip=tuple(args.clip) if args.clip else None, thin=args.thin,
                      nifti_modality=args.nifti_modality.upper())
    STOPPED_BY_SIGTERM.clear()
    missing = [str(p) for p in args.inputs if not Path(p).exists()]
    if missing:  # a mistyped path must not make an empty, valid store
        print(f"error: no such file or folder: {', '.join(missing)} (nothing written)", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _interrupt)  # e.g. a batch scheduler's time limit
    try:
        summary, table, errors = ingest(args.inputs, args.out or Path("."), options,
                                        workers=args.workers, overwrite=args.overwrite,
                                        errors_report=args.errors, dry_run=args.dry_run)
    except KeyboardInterrupt:
        stop = "SIGTERM" if STOPPED_BY_SIGTERM else "SIGINT"
        print(f"\nstopped by {stop}; finished series are kept in {args.out}: run the same command "
              "again to finish.", file=sys.stderr)
        return signal_status(signal.SIGTERM if STOPPED_BY_SIGTERM else signal.SIGINT)
    except (IngestError, StoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)
    if args.dry_run:
        print_plan(table, errors)
    else:
        print_summary(summary)
    if summary.series_of_other_modalities:
        other = ", ".join(f"{m}: {n}" for m, n in sorted(summary.series_of_other_modalities.items()))
        print(f"ignored    series of other modalities ({other}); choose them with --modality")
    return 2 if summary.anything_skipped else 0


STOPPED_BY_SIGTERM: list[int] = []


def _interrupt(signum, frame):
    STOPPED_BY_SIGTERM.append(signum)
    raise KeyboardInterrupt


def print_plan(table, errors) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False) if len(table) else "nothing to ingest")
    print(f"\n{len(table)} series, {int(table['slices'].fillna(0).sum()) if len(table) else 0} "
          f"slices would be ingested; {len(errors)} inputs would be skipped")
    for file, reason in errors:
        print(f"  skip {file}: {reason}")


def print_summary(s) -> None:
    print(f"store      {s.store}: {s.slices_in_store} slices")
    print(f"written    {s.series_written} series, {s.slices_written} slices this run"
          + (f" ({s.series_already_done} series were already done)" if s.series_already_done else ""))
    if s.slices_dropped_by_thinning:
        print(f"thinned    {s.slices_dropped_by_thinning} near-duplicate slices dropped")
    if s.non_image_files_ignored:
        print(f"ignored    {s.non_image_files_ignored} non-image files (XML, text, ...)")
    if s.duplicates_ignored:
        print(f"ignored    {s.duplicates_ignored} copies of DICOM files or slices already found"
              + _where_copies_are_listed(s))
    if s.skipped:
        print(f"skipped    {s.skipped} inputs ({s.series_skipped} whole series); reasons in {s.errors_report}")


def _where_copies_are_listed(s) -> str:
    """": listed in DUPLICATES" (those not read), "(K unreadable: in ERRORS)" (those read that
    could not be): each copy is a row of one of the two reports."""
    listed = s.duplicates_ignored - s.copies_unreadable
    where = ""
    if listed:
        where = f": {f'{listed} ' if s.copies_unreadable else ''}listed in {s.duplicates_report}"
    if s.copies_unreadable:
        where += f" ({s.copies_unreadable} unreadable: in {s.errors_report})"
    return where
