"""Say what a checkpoint holds and whether it will load, without running code from it.

    medssl inspect PATH|NAME [--arch resnet50] [--trust-pickle] [--dir DIR]

A released checkpoint's NAME is looked up in --dir, else $MEDSSL_CHECKPOINTS, else ./checkpoints.
(python checkpoints/describe.py is the same command.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoints import CheckpointError, read_backbone


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a checkpoint file, or a released checkpoint's name")
    ap.add_argument("--arch", help="expected ResNet (default: whatever the file holds)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="run the file's pickled code (only for files you trust)")
    ap.add_argument("--dir", type=Path, help="where released checkpoints are kept")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(argv)
    try:
        _, report = read_backbone(args.source, args.arch, trust=args.trust_pickle, folder=args.dir)
    except CheckpointError as err:
        print(f"will it load? NO: {err}")
        return 1
    print(f"file       {report.source}")
    print(f"unpickling {report.unpickling}")
    print(f"tensors    {report.file_tensors} under {report.container!r}")
    print(f"format     {report.format_label}")
    print(f"method     {report.method or 'unknown'}")
    print(f"arch       {report.arch}")
    print(f"backbone   {report.loaded} tensors, every one found with the right shape")
    ignored = ", ".join(f"{k} ({n})" for k, n in report.ignored.items()) or "nothing"
    print(f"ignored    {ignored}")
    if report.metadata:
        print(f"metadata   {report.metadata}")
    print(f"input      {report.input.describe()} ({report.input_from})")
    print(f"will it load? YES: medssl.checkpoints.load_backbone({args.source!r}, arch={report.arch!r}) "
          f"gives a torchvision {report.arch} with all {report.loaded} backbone tensors; only fc is new.")
    return 0
