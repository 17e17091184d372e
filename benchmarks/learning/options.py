"""The command-line options of scoring and of the work folder, shared by the learning benchmark,
the views ablation and the learning curves (each with its own defaults)."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from benchmarks.common import RESULTS
from benchmarks.learning import QUICK_SCHEDULE, SEGMENTATION_PATIENTS, TASKS


def scoring_arguments(ap: argparse.ArgumentParser, *, labels, finetune_labels, finetune_seeds: int,
                      finetune_tasks, work: str, segmentation_seeds: int = 0) -> None:
    ap.add_argument("--labels", nargs="+", type=int, default=labels,
                    help="labelled images per class of the frozen-feature probes (0: all of the training split)")
    ap.add_argument("--seeds", type=int, default=10, help="label-subset seeds of the frozen-feature probes")
    ap.add_argument("--finetune-labels", nargs="+", type=int, default=finetune_labels,
                    help="labelled images per class fine-tuned (0: all)")
    ap.add_argument("--finetune-seeds", type=int, default=finetune_seeds, help="fine-tuning seeds (0: no fine-tuning)")
    ap.add_argument("--finetune-tasks", nargs="+", choices=list(TASKS), default=finetune_tasks)
    ap.add_argument("--segmentation-patients", nargs="+", type=int, default=list(SEGMENTATION_PATIENTS),
                    help="training patients of the phantom segmentation task fine-tuned")
    ap.add_argument("--segmentation-seeds", type=int, default=segmentation_seeds,
                    help="segmentation fine-tuning seeds (0: no segmentation)")
    ap.add_argument("--finetune-schedule", type=Path, default=QUICK_SCHEDULE,
                    help="fine-tune config with the schedule (trainer.max_epochs, model.freeze_epochs)")
    ap.add_argument("--workers", type=int, default=1, help="pre-training data workers")
    ap.add_argument("--work", type=Path, default=Path(work), help="phantom data, runs and scores (kept)")
    ap.add_argument("--configs", type=Path, help="folder of the <method>_quick.yaml configs (default: the "
                    "registry's: $MEDSSL_PRETRAIN_CONFIGS, else Pre-Training/configs)")
    ap.add_argument("--out", type=Path, default=RESULTS)


def finetune_plan(args) -> dict | None:
    """What ``finetuning.finetune_scores`` fine-tunes, from ``scoring_arguments``' options (None:
    nothing)."""
    if not args.finetune_seeds and not args.segmentation_seeds:
        return None
    segmentation = ({"patients": args.segmentation_patients, "seeds": list(range(args.segmentation_seeds))}
                    if args.segmentation_seeds else None)
    return {"tasks": args.finetune_tasks if args.finetune_seeds else [], "labels": args.finetune_labels,
            "seeds": list(range(args.finetune_seeds)), "schedule": str(args.finetune_schedule.resolve()),
            "schedule_settings": yaml.safe_load(args.finetune_schedule.read_text()), "segmentation": segmentation}
