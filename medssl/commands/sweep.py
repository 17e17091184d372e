"""Fine-tune every checkpoint on every task at shrinking training-set sizes, several seeds.

    medssl sweep --task covid=covid:data/COVID-CT --task organ=medmnist:organsmnist_224.npz \\
        --checkpoints random spark swav runs/byol_backbone.pt --out results/results.csv
    medssl sweep --task organ=medmnist:organsmnist_224.npz --model.mode linear \\
        --trainer.max_epochs 30 --data.num_workers 8
    medssl report results/results.csv

Tasks are NAME=KIND:PATH (KIND: covid, medmnist, brain, folder, csv). Checkpoints are paths,
released names, or "random" (the baseline). Subsets are stratified, seeded and nested.
Every other option is one of the fine-tune command's (medssl finetune fit --help:
--config FILE, --model.*, --data.*, --trainer.*): each run is that command on one task, training
fraction, seed and checkpoint, which the sweep sets.
Re-running the same command skips finished runs, so a killed sweep resumes; rows a kill left
incomplete are moved to results.csv.torn and their runs done again.
(python Downstream/sweep.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..checkpoints import CheckpointError
from ..data.errors import UnreadableInput
from ..downstream import TaskError
from ..downstream.results import ResultsError
from ..downstream.sweep import SweepConfig, run_sweep


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
    ap.add_argument("--task", type=parse_task, action="append", required=True)
    ap.add_argument("--checkpoints", nargs="+", default=list(SweepConfig.checkpoints))
    ap.add_argument("--fractions", nargs="+", type=float, default=list(SweepConfig.fractions))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SweepConfig.seeds))
    ap.add_argument("--out", default="results/results.csv")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args, finetune = parser(prog).parse_known_args(argv)
    config = SweepConfig(dict(args.task), tuple(args.checkpoints), tuple(args.fractions), tuple(args.seeds),
                         tuple(finetune))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            table = run_sweep(config, args.out)
    except (TaskError, UnreadableInput, CheckpointError, ResultsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(table)} runs in {args.out}; next: medssl report {args.out}")
    return 0
