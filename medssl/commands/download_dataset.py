"""Download the public downstream datasets into the layouts the loaders read.

    medssl download dataset covid --out data/COVID-CT
    medssl download dataset organsmnist --size 224 --out data/medmnist

Progress bar and resume (gdown), MD5 check where the dataset publishes one (MedMNIST).
--base-url points at a mirror. Each COVID-CT zip is extracted (flattened) into a hidden folder that
is renamed into place, then <folder>.contents.json lists every file and its size; a rerun checks
that list and extracts again if anything is missing, so a killed extraction is never "ready".
Zip entries that share a file name but differ in content are refused, named.
The datasets are those the task formats offer (medssl/downstream/formats).
(python Downstream/download.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..download import DownloadError
from ..downstream.formats import FORMATS


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    datasets = ap.add_subparsers(dest="dataset", required=True, metavar="dataset",
                                 help="which dataset (each has its own options: DATASET --help)")
    for kind, task_format in FORMATS.items():
        for download in task_format.downloads:
            sub = datasets.add_parser(download.name, help=f"{download.title} (--data.kind {kind})")
            sub.add_argument("--out", type=Path, required=True)
            sub.add_argument("--base-url", help="a mirror holding the same files")
            download.add_arguments(sub)
            sub.set_defaults(kind=kind, download=download)
    return ap


def main(argv=None, prog: str | None = None) -> int:
    options = vars(parser(prog).parse_args(argv))
    kind, download = options.pop("kind"), options.pop("download")
    options.pop("dataset")
    try:
        path = download.fetch(**options)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{download.title} ready in {path}: load it with --data.kind {kind} --data.path {path}")
    return 0
