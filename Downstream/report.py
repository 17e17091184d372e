"""Write the markdown table and the plots of a sweep's results.csv.

    python Downstream/report.py results/results.csv [--out results/report]

Incomplete rows (a sweep killed while writing one) are named and left out.
"""
import argparse
import sys
import warnings
from pathlib import Path

from medssl.downstream.report import write_report
from medssl.downstream.results import ResultsError


def show_warning(message, *_, **__):
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, help="default: a report/ folder beside results.csv")
    args = ap.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            paths = write_report(args.results, args.out or args.results.parent / "report")
    except (ResultsError, OSError) as err:  # no or empty results file, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name:18s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
