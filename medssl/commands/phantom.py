"""Write the embedded default data: a phantom CT slice store, three labelled phantom classification
tasks and a phantom segmentation task.

    medssl phantom --out demo-output/phantom

(python Pre-Training/make_phantom.py is the same command.)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.phantom import write_phantom_store
from ..data.preview import save_store_preview
from ..data.summary import describe_store
from ..downstream.phantom_tasks import TaskCounts, write_phantom_tasks


def at_least(least: int):
    """An argparse type: a whole number of at least ``least``."""
    def count(text: str) -> int:
        value = int(text)  # not a number: argparse says "invalid count value"
        if value < least:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {least}")
        return value
    return count


TASK_COUNT_OPTIONS = {  # TaskCounts field: (option, help)
    "organ_per_class": ("--organ-per-class", "organ task images per class"),
    "covid_per_class": ("--covid-per-class", "COVID task images per class"),
    "brain_per_class": ("--brain-per-class", "brain task images per class"),
    "segmentation_patients": ("--segmentation-patients", "segmentation task patients"),
    "segmentation_slices": ("--segmentation-slices", "segmentation task slices per patient"),
    "covid_extra_test_per_class": ("--covid-extra-test", "COVID test images per class added after the split's own"),
    "brain_extra_test_per_class": ("--brain-extra-test", "brain test images per class added after the split's own"),
}


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--patients", type=at_least(1), default=40, help="phantom patients in the store")
    ap.add_argument("--slices", type=at_least(1), default=32, help="slices per patient")
    ap.add_argument("--size", type=at_least(1), default=64, help="slice size in pixels (store)")
    ap.add_argument("--task-size", type=at_least(1), default=64, help="image size of the COVID/brain tasks")
    ap.add_argument("--organ-size", type=int, default=28, choices=(28, 64, 128, 224),
                    help="image size of the organ task (MedMNIST sizes)")
    for field, (option, words) in TASK_COUNT_OPTIONS.items():
        least = 0 if field.endswith("extra_test_per_class") else 1
        ap.add_argument(option, dest=field, type=at_least(least), default=getattr(TaskCounts, field), help=words)
    ap.add_argument("--seed", type=int, default=0, help="the phantoms' random seed")
    ap.add_argument("--no-tasks", action="store_true", help="write only the pre-training store")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(argv)
    store = write_phantom_store(args.out / "store", patients=args.patients,
                                slices_per_patient=args.slices, size=args.size, seed=args.seed,
                                overwrite=args.overwrite)
    print(describe_store(store))
    preview = save_store_preview(store, args.out / "store_preview.png")
    print(f"preview    {preview}")
    if not args.no_tasks:
        tasks_dir = args.out / "tasks"
        if tasks_dir.exists() and not args.overwrite:
            print(f"tasks      {tasks_dir} (already there; --overwrite to make them again)")
        else:
            counts = TaskCounts(**{field: getattr(args, field) for field in TASK_COUNT_OPTIONS})
            paths = write_phantom_tasks(tasks_dir, seed=args.seed, size=args.task_size,
                                        organ_size=args.organ_size, counts=counts,
                                        overwrite=args.overwrite)
            for name, path in paths.items():
                print(f"task       {name:6s} {path}")
    return 0
