"""Download a public downstream dataset or the study's released checkpoints.

    medssl download dataset covid --out data/COVID-CT             # python Downstream/download.py
    medssl download dataset organsmnist --size 224 --out data/medmnist
    medssl download checkpoint spark [--dir DIR]                  # python checkpoints/download.py
    medssl download checkpoint all

medssl download dataset --help and medssl download checkpoint --help list the names and options.
"""
from __future__ import annotations

import argparse
import sys

KINDS = {"dataset": "a public downstream dataset, in the layout its task format reads",
         "checkpoint": "the study's released checkpoints (resumable, checksum and key check)"}


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = ap.add_subparsers(dest="kind", required=True, metavar="what")
    for kind, summary in KINDS.items():
        kinds.add_parser(kind, help=summary, add_help=False)
    return ap


def main(argv=None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "medssl download"
    if argv and argv[0] not in KINDS and not argv[0].startswith("-"):
        parser(prog).error(f"download what? {prog} checkpoint {argv[0]}, or {prog} dataset {argv[0]}")
    kind = parser(prog).parse_args(argv[:1]).kind  # the rest is that download's own command line
    if kind == "dataset":
        from .download_dataset import main as download
    else:
        from .download_checkpoint import main as download
    return download(argv[1:], f"{prog} {kind}")
