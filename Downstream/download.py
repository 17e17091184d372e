"""Download the public downstream datasets into the layouts the loaders read.

    python Downstream/download.py covid --out data/COVID-CT
    python Downstream/download.py organsmnist --size 224 --out data/medmnist

Progress bar and resume (gdown), MD5 check where the dataset publishes one (MedMNIST).
--base-url points at a mirror. Each COVID-CT zip is extracted (flattened) into a hidden folder that
is renamed into place, then <folder>.contents.json lists every file and its size; a rerun checks
that list and extracts again if anything is missing, so a killed extraction is never "ready".
Zip entries that share a file name but differ in content are refused, named.
"""
import argparse
import sys
from pathlib import Path

from medssl.downstream import datasets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=("covid", "organsmnist"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=28, choices=sorted(datasets.ORGANSMNIST))
    ap.add_argument("--base-url", help="a mirror holding the same files")
    ap.add_argument("--md5", help="expected MD5 (overrides the published one)")
    args = ap.parse_args(argv)
    try:
        if args.dataset == "covid":
            path = datasets.covid(args.out, args.base_url or datasets.COVID_CT)
            print(f"COVID-CT ready in {path}: load it with --data.kind covid --data.path {path}")
        else:
            path = datasets.organsmnist(args.out, args.size, args.base_url or datasets.ZENODO_MEDMNIST, args.md5)
            print(f"OrganSMNIST ready: {path}: load it with --data.kind medmnist --data.path {path}")
    except datasets.DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
