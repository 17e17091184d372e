"""Answer "does pre-training help?" from a sweep's results.csv: verdict and labels-saved lines
(printed here and at the top of results.md), tables, paired differences, plots.

    medssl report results/results.csv [--out results/report] [--baseline random]
        [--metric accuracy] [--reference-fraction 1.0]

Every checkpoint is compared with the baseline on the same labelled subsets (same task, mode,
fraction and seed). Incomplete rows (a sweep killed while writing one) are named and left out.
(python Downstream/report.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..downstream.report import build_report
from ..downstream.results import ResultsError
from ..downstream.scores import REPORTED


def show_warning(message, *_, **__):
    print(f"warning: {message}", file=sys.stderr)


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="a sweep's results.csv (its shards' files are read too)")
    ap.add_argument("--out", type=Path, help="default: a report/ folder beside results.csv")
    ap.add_argument("--baseline", help="the label, method or checkpoint to compare with (default: random init)")
    ap.add_argument("--metric", default="accuracy", choices=REPORTED,
                    help="the score of the verdicts (default: accuracy)")
    ap.add_argument("--reference-fraction", type=float,
                    help="labels saved: reach the baseline's score at this fraction (default: its largest)")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            report = build_report(args.results, baseline=args.baseline, metric=args.metric,
                                  reference_fraction=args.reference_fraction)
            paths = report.write(args.out or args.results.parent / "report")
    except (ResultsError, OSError) as err:  # no or empty results file, a full disk, an unknown baseline
        print(f"error: {err}", file=sys.stderr)
        return 1
    if report.baseline is None:
        print("No random-init runs to compare with: name a baseline with --baseline.")
    for line in report.findings:
        print(line)
    print()
    for name, path in paths.items():
        print(f"{name:26s} {path}")
    return 0
