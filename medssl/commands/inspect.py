"""Describe and check a slice store or a checkpoint, whichever PATH is.

    medssl inspect STORE [--verify] [--preview store.png] [--window lung]
    medssl inspect CHECKPOINT|NAME [--arch resnet50] [--trust-pickle] [--dir DIR]

A folder is read as a slice store (python Pre-Training/store_info.py): what it holds, a check of
every shard (--verify: hashed whole; exit status 1 names each damaged one), a picture of it.
A file, a timm export folder or a released checkpoint's name (spark, ...) is read as a checkpoint
(python checkpoints/describe.py): its format, method, architecture, tensors and whether it will
load (exit status 1 if not), without running code from it.
PATH comes first; medssl inspect PATH --help lists the options for what PATH is.
"""
from __future__ import annotations

import sys
from pathlib import Path

HELP = ("-h", "--help")


def main(argv=None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "medssl inspect"
    if argv[:1] and argv[0] in HELP:
        print(f"usage: {prog} PATH [options]\n\n{__doc__.strip()}")
        return 0
    if not argv or argv[0].startswith("-"):
        print(f"usage: {prog} PATH [options]\nerror: PATH comes first: a slice store folder, a checkpoint "
              "file or a released checkpoint's name", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if path.is_dir() and not (path / "model.safetensors").exists():  # a timm export folder is a checkpoint
        from .inspect_store import main as inspect
    else:
        from .inspect_checkpoint import main as inspect
    return inspect(argv, prog)
