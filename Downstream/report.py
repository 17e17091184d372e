"""Write the markdown table and the plots of a sweep's results.csv.

    python Downstream/report.py results/results.csv [--out results/report]
"""
import argparse
import sys
from pathlib import Path

from medssl.downstream.report import write_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, help="default: a report/ folder beside results.csv")
    args = ap.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results}: no such results file", file=sys.stderr)
        return 1
    paths = write_report(args.results, args.out or args.results.parent / "report")
    for name, path in paths.items():
        print(f"{name:18s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
