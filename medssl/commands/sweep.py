"""Fine-tune every checkpoint on every task at shrinking training-set sizes, several seeds.

    medssl sweep --task covid=covid:data/COVID-CT --task organ=medmnist:organsmnist_224.npz \\
        --checkpoints random spark swav runs/byol_backbone.pt --out results/results.csv
    medssl sweep --task organ=medmnist:organsmnist_224.npz --model.mode linear \\
        --trainer.max_epochs 30 --data.num_workers 8
    medssl report results/results.csv

Tasks are NAME=KIND:PATH (KIND: covid, medmnist, brain, folder, csv; masks for segmentation).
Checkpoints are paths, released names, or "random" (the baseline). Subsets are stratified, seeded and nested.
Every other option is one of the fine-tune command's (medssl finetune fit --help:
--config FILE, --model.*, --data.*, --trainer.*): each run is that command on one task, training
fraction, seed and checkpoint, which the sweep sets.
Re-running the same command skips finished runs, so a killed sweep resumes; rows a kill left
incomplete are moved to results.csv.torn and their runs done again.

On a cluster, split the runs: --shard I/N runs every N-th run from the I-th into
results.shard-I-of-N.csv; inside a SLURM job array it is read from the array's variables:

    sbatch --array=0-9 --wrap "medssl sweep --task ... --checkpoints ... --out results/results.csv"

medssl report results/results.csv then reads results.csv and every shard's file.
(python Downstream/sweep.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..downstream.subsets import DEFAULT_FRACTIONS
from ..exits import stopped_by_signal

# the sweep's defaults (``SweepConfig``'s; tests/test_sweep.py holds them equal): --help and
# parsing load no torch
CHECKPOINTS, SEEDS = ["random"], [0, 1, 2]


def parse_task(text: str):
    name, _, rest = text.partition("=")
    kind, _, path = rest.partition(":")
    if not (name and kind and path):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=KIND:PATH")
    return name, (kind, path)


def show_warning(message, *_, **__):
    print(f"warning: {message}", file=sys.stderr)


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--task", type=parse_task, action="append", required=True, metavar="NAME=KIND:PATH",
                    help="a labelled task (KIND: covid, medmnist, brain, folder, csv; masks for "
                         "segmentation); repeat for more")
    ap.add_argument("--checkpoints", nargs="+", default=CHECKPOINTS, metavar="CHECKPOINT",
                    help="backbone files, released names, or random (default: %(default)s)")
    ap.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS), metavar="F",
                    help="training-set fractions, nested per seed (default: %(default)s)")
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS, metavar="SEED",
                    help="subset and training seeds (default: %(default)s)")
    ap.add_argument("--out", default="results/results.csv", help="the results table (default: %(default)s)")
    ap.add_argument("--shard", help="I/N: this worker's share of the runs (default: the SLURM job array's task, "
                    "else all)")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    ap = parser(prog)
    args, finetune = ap.parse_known_args(argv)
    from ..checkpoints import CheckpointError
    from ..data.errors import UnreadableInput
    from ..downstream import TaskError
    from ..downstream.results import ResultsError
    from ..downstream.sweep import Shard, SweepConfig, run_sweep

    try:
        shard = Shard.parse(args.shard) if args.shard else Shard.from_slurm_array()
    except ValueError as err:
        ap.error(f"--shard: {err}")
    config = SweepConfig(dict(args.task), tuple(args.checkpoints), tuple(args.fractions), tuple(args.seeds),
                         tuple(finetune))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            with stopped_by_signal(f"finished runs are kept in {args.out}: run the same command again to go on."):
                table = run_sweep(config, args.out, shard=shard)
    except (TaskError, UnreadableInput, CheckpointError, ResultsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    where = f"{args.out} and its shards' files" if shard else args.out
    print(f"{len(table)} runs in {where}; next: medssl report {args.out}")
    return 0
