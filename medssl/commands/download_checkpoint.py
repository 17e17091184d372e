"""Download the study's released checkpoints and torchvision's ImageNet weights, resumable, with
checksum verification.

    medssl download checkpoint all
    medssl download checkpoint spark [--dir DIR]
    medssl download checkpoint swav --url https://mirror.example/swav.ckpt --sha256 HEX

Files go to --dir, else $MEDSSL_CHECKPOINTS, else ./checkpoints in the working directory. An
interrupted download resumes where it stopped when run again. After downloading, the file's keys
are checked: it must hold a complete ResNet backbone, whatever its name says.
(python checkpoints/download.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoints import RELEASED, CheckpointError, checkpoint_dir, read_backbone
from ..download import DownloadError, fetch


def check(entry, dest: Path, url: str | None, expected: str | None) -> bool:
    print(f"{entry.name}: " + (f"{dest} is already there; verifying" if dest.exists()
                               else f"downloading {url or entry.url} -> {dest}"))
    try:
        digest = fetch(url or entry.address, dest, gdrive_id=entry.gdrive_id, expected=expected)
    except DownloadError as err:
        print(f"error: {entry.name}: {err}", file=sys.stderr)
        return False
    print(f"{entry.name}: sha256 {digest}" + ("" if expected else
          " (not yet recorded in medssl/checkpoints/registry.py)"))
    try:
        _, report = read_backbone(dest, arch=None)
    except CheckpointError as err:
        print(f"error: {entry.name}: downloaded, but {err}", file=sys.stderr)
        return False
    note = "" if report.format is entry.format else f" (the registry expected {entry.format})"
    print(f"{entry.name}: {report.format_label}{note}, {report.arch}, {report.loaded} backbone tensors: ready")
    return True


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", help=f"{', '.join(RELEASED)} or all")
    ap.add_argument("--dir", type=Path,
                    help="where to save (default: $MEDSSL_CHECKPOINTS, else ./checkpoints)")
    ap.add_argument("--url", help="download from this address instead (a mirror); one name only")
    ap.add_argument("--sha256", help="expected checksum, when the registry has none yet")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    ap = parser(prog)
    args = ap.parse_args(argv)
    names = list(RELEASED) if args.names == ["all"] else [n.lower() for n in args.names]
    unknown = [n for n in names if n not in RELEASED]
    if unknown:
        ap.error(f"unknown checkpoint {unknown}; choose from {', '.join(RELEASED)} or all")
    if args.url and len(names) != 1:
        ap.error("--url takes one checkpoint name")
    folder = checkpoint_dir(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    ok = [check(RELEASED[n], folder / RELEASED[n].filename, args.url,
                args.sha256 or RELEASED[n].expected_sha256) for n in names]
    return 0 if all(ok) else 1
