"""Fine-tune every checkpoint on every task at shrinking training-set sizes, several seeds.

    python Downstream/sweep.py --task covid=covid:data/COVID-CT --task organ=medmnist:organsmnist_224.npz \\
        --checkpoints random spark swav runs/byol_backbone.pt --out results/results.csv
    python Downstream/report.py results/results.csv

Tasks are NAME=KIND:PATH (KIND: covid, medmnist, brain, folder, csv). Checkpoints are paths,
released names, or "random" (the baseline). Subsets are stratified, seeded and nested.
Re-running the same command skips finished runs, so a killed sweep resumes; rows a kill left
incomplete are moved to results.csv.torn and their runs done again.
"""
import argparse
import sys
import warnings

from medssl.checkpoints import CheckpointError
from medssl.downstream import DEFAULT_FRACTIONS, TaskError
from medssl.downstream.results import ResultsError
from medssl.downstream.sweep import SweepConfig, run_sweep


def parse_task(text: str):
    name, _, rest = text.partition("=")
    kind, _, path = rest.partition(":")
    if not (name and kind and path):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=KIND:PATH")
    return name, (kind, path)


def show_warning(message, *_, **__):
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", type=parse_task, action="append", required=True)
    ap.add_argument("--checkpoints", nargs="+", default=["random"])
    ap.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--mode", choices=("finetune", "linear", "knn"), default="finetune")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=70)
    ap.add_argument("--freeze-epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--backbone-lr", type=float, default=1e-4)
    ap.add_argument("--min-per-class", type=int, default=2)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--out", default="results/results.csv")
    args = ap.parse_args(argv)
    config = SweepConfig(dict(args.task), args.checkpoints, tuple(args.fractions), tuple(args.seeds),
                         args.mode, args.arch, args.image_size, args.batch_size, args.epochs,
                         args.freeze_epochs, args.lr, 5e-4, args.backbone_lr, args.min_per_class,
                         args.workers, precision=args.precision)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            table = run_sweep(config, args.out)
    except (TaskError, CheckpointError, ResultsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{len(table)} runs in {args.out}; next: python Downstream/report.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
