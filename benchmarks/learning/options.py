"""The command-line options of scoring and of the work folder, shared by the learning benchmark,
the views ablation and the learning curves (each with its own defaults)."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import yaml

from benchmarks.common import RESULTS, ROOT
from benchmarks.learning import QUICK_SCHEDULE, SEGMENTATION_PATIENTS, TASKS
from medssl.files import atomic_write_bytes


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
    configs = ap.add_mutually_exclusive_group()
    configs.add_argument("--configs", type=Path, help="folder of the <method>_quick.yaml configs (default: the "
                         "registry's: $MEDSSL_PRETRAIN_CONFIGS, else Pre-Training/configs)")
    configs.add_argument("--configs-at", metavar="REV", help="the quick configs as they were at git revision REV "
                         "of this repository (e.g. to repeat a committed report made before they changed)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--add-to", type=Path, metavar="REPORT.json",
                    help="a report this benchmark wrote before on this machine, with these options but other "
                    "methods: the new report holds its methods too (a long benchmark, a few methods at a time)")


def parse(ap: argparse.ArgumentParser, argv: list[str] | None):
    """``ap``'s arguments, ``--configs-at REV`` resolved into ``--configs``: the revision's quick
    configs written to ``<work>/configs-at-<commit>``."""
    args = ap.parse_args(argv)
    if args.configs_at:
        args.configs = configs_at(args.configs_at, args.work)
    return args


def configs_at(revision: str, work: Path, repository: Path = ROOT) -> Path:
    """Write the ``Pre-Training/configs/*_quick.yaml`` files of git ``revision`` of ``repository``
    into ``work/configs-at-<commit>`` and return that folder; a revision git does not know (or no
    git at all) stops with the reason."""
    def git(*words: str) -> bytes:
        try:
            return subprocess.run(["git", "-C", str(repository), *words], check=True, capture_output=True).stdout
        except FileNotFoundError:
            raise SystemExit(f"--configs-at {revision}: git is not installed") from None
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"--configs-at {revision}: git cannot read it in {repository}: "
                             f"{error.stderr.decode(errors='replace').strip()}") from None

    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}").decode().strip()
    names = [n for n in git("ls-tree", "--name-only", f"{commit}:Pre-Training/configs").decode().split()
             if n.endswith("_quick.yaml")]
    if not names:
        raise SystemExit(f"--configs-at {revision}: no Pre-Training/configs/*_quick.yaml at that revision")
    folder = work / f"configs-at-{commit[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        atomic_write_bytes(folder / name, git("show", f"{commit}:Pre-Training/configs/{name}"))
    return folder


def finetune_plan(args) -> dict | None:
    """What ``finetuning.finetune_scores`` fine-tunes, from ``scoring_arguments``' options (None:
    nothing)."""
    if not args.finetune_seeds and not args.segmentation_seeds:
        return None
    segmentation = ({"patients": args.segmentation_patients, "seeds": list(range(args.segmentation_seeds))}
                    if args.segmentation_seeds else None)
    return {"tasks": args.finetune_tasks if args.finetune_seeds else [], "labels": args.finetune_labels,
            "seeds": list(range(args.finetune_seeds)), "schedule": str(args.finetune_schedule.resolve()),
            "schedule_settings": schedule_settings(args.finetune_schedule), "segmentation": segmentation}


def schedule_settings(path: Path) -> dict:
    """The fine-tune config at ``path``, read before any work: a missing or broken file stops the
    benchmark at once, naming it."""
    try:
        settings = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SystemExit(f"--finetune-schedule {path}: cannot read it ({error})") from None
    if not isinstance(settings, dict):
        raise SystemExit(f"--finetune-schedule {path}: not a fine-tune config (a YAML mapping such as "
                         f"{{trainer: {{max_epochs: 70}}, model: {{freeze_epochs: 10}}}})")
    return settings
