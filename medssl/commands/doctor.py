"""Check that this machine trains every pre-training method correctly, and how fast.

    medssl doctor                                   # every method, this machine's defaults
    medssl doctor --methods spark mocov2 --size 224 --batch 64 --compile --out doctor.md

On a GPU node run it before the first long job: each method's loss under the run's precision
against float32, host reads per step, graph breaks under torch.compile (--compile), images/s,
peak memory and the step time over its bare backbone passes, DDP against one process (--ddp N;
default: every GPU when there are two or more), and whether SLURM requeue is armed. The table
is written to --out too: attach it to a bug report. Exit status 0 when every method is OK, 2
when one needs a look (its verdict says why), 1 when the check could not run.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    from ..pretrain.methods import method_names

    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=method_names(), help="default: every registered method")
    ap.add_argument("--arch", help="backbone (default: each full config's, resnet50)")
    ap.add_argument("--size", type=int, help="side of the largest view (default: 224 on a GPU, 64 on a CPU)")
    ap.add_argument("--batch", type=int, help="images per step and process (default: 64 on a GPU, 4 on a CPU)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method")
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"],
                    help="default: what a run here would use (medssl.precision)")
    ap.add_argument("--compile", action="store_true", help="count graph breaks under torch.compile (minutes)")
    ap.add_argument("--ddp", type=int, help="processes of the DDP check (0: none; default: the GPUs if >= 2)")
    ap.add_argument("--out", type=Path, default=Path("medssl-doctor.md"), help="where the table is written")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    import torch

    from .. import doctor

    args = parser(prog).parse_args(argv)
    gpu = torch.cuda.is_available()
    args.size = args.size or (224 if gpu else 64)
    args.batch = args.batch or (64 if gpu else 4)
    doctor.defaults(args)
    rows, text = doctor.run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    for row in rows:
        print(f"{row['method']}: {row['verdict']}")
    print(f"written: {args.out}")
    return 0 if all(row["verdict"] == "OK" for row in rows) else 2
