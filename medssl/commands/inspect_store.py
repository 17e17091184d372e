"""Describe a slice store, check it, and save a picture of it.

    medssl inspect STORE [--verify] [--preview store.png]

Opening a store checks each shard's size and a few sampled blocks; --verify hashes every shard
whole and names all the damaged ones (exit status 1).
(python Pre-Training/store_info.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import SliceStore, StoreError
from ..data.preview import save_store_preview
from ..data.summary import describe_store


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="a slice store folder (medssl ingest --out)")
    ap.add_argument("--verify", action="store_true", help="check every shard's full checksum")
    ap.add_argument("--preview", type=Path, help="save a PNG grid of slices here")
    ap.add_argument("--window", default="lung", help="CT window of the preview (lung, abdomen, ...)")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(argv)
    try:
        store = SliceStore(args.store, quick_check=not args.verify)
        if args.verify:  # every shard hashed whole; all the damaged ones named
            store.verify()
        print(describe_store(store))
        if len(store) == 0:
            print(f"error: {args.store}: the store holds no slices (was every input skipped? see its "
                  "errors file, or ingest again)", file=sys.stderr)
            return 1
        if args.verify:
            print("verify     all shard checksums match")
        if args.preview:
            print(f"preview    {save_store_preview(store, args.preview, window=args.window)}")
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
