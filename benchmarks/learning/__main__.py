"""Does pre-training help? The learning benchmark.

Every registered method pre-trains on the phantom slice store for a fixed time with its quick
config (``Pre-Training/configs/<method>_quick.yaml``), and its backbone is exported. Then the
frozen features of each backbone and of random initialisation are scored on the three phantom
tasks with few labelled images per class, by the kNN vote and by the linear probe (the
downstream ``knn`` and ``linear`` modes), over several label-subset seeds, and each is
fine-tuned (the study's protocol, the short schedule). Each method's paired difference to random
init (same subsets, same test images, same input mapping and size) is printed with its 95 %
interval.

Goal (PASS / MISS per method): by fine-tuning, with 5 and with 10 labels per class, on every task
fine-tuned, the interval of the difference to random init lies above zero (kNN and the linear
probe are reported beside it). The phantom segmentation task is fine-tuned too, on 2 and 5
training patients, and its Dice reported with its difference to random init (no goal).

    python -m benchmarks.learning                          # every method, 10 minutes each
    python -m benchmarks.learning --minutes 3 --methods swav spark --work /tmp/learning

The benchmark is resumable: the same command again goes on with the pre-training runs that did
not finish and re-uses those that did, and the scores of each backbone and of random init as soon
as they are done (``--work`` keeps them: runs, then ``scores/``). Written: benchmarks/results/
learning-<machine>.{json,md} and learning-<machine>-*.png (loss curves, views, accuracy).
"""
from __future__ import annotations

import argparse
import sys

import torch
import yaml

from benchmarks import common
from benchmarks.learning import ALL, GOAL_LABELS, TASKS
from benchmarks.learning.comparison import compare
from benchmarks.learning.figures import plots
from benchmarks.learning.options import finetune_plan, parse, scoring_arguments
from benchmarks.learning.pretraining import phantom, phantom_tasks, pretrain
from benchmarks.learning.report import markdown
from benchmarks.learning.scoring import evaluate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=common.methods(), default=common.methods())
    ap.add_argument("--minutes", type=float, default=10.0, help="pre-training time per method")
    ap.add_argument("--steps", type=int, help="pre-training steps per method instead of --minutes")
    scoring_arguments(ap, labels=[5, 10, 25, ALL], finetune_labels=list(GOAL_LABELS), finetune_seeds=5,
                      finetune_tasks=list(TASKS), work="learning-work", segmentation_seeds=3)
    args = parse(ap, argv)
    torch.set_num_threads(common.cores())
    config = common.quick_config(args.methods[0], args.configs)
    arch = yaml.safe_load(config.read_text())["model"]["arch"]
    seeds = list(range(args.seeds))
    finetune = finetune_plan(args)
    settings = {"arch": arch, "minutes": args.minutes, "steps": args.steps, "labels": args.labels, "seeds": seeds,
                "workers": args.workers, "methods": args.methods, "finetune": finetune,
                "phantom": phantom_tasks(args.work)}
    earlier = common.earlier_report(args.add_to, "learning", settings)
    root = phantom(args.work)
    pretraining = {m: pretrain(m, common.quick_config(m, args.configs), root / "store", args.work / "pretrain" / m,
                               args.minutes, args.workers, args.steps) for m in args.methods}
    results = evaluate({m: r["backbone"] for m, r in pretraining.items()}, arch, root / "tasks", args.labels,
                       seeds, args.work, finetune)
    report = common.add_to(earlier, {**common.header("learning", argv), "settings": settings,
                                     "pretraining": pretraining, "results": results,
                                     "comparison": compare(results, args.methods)},
                           ("pretraining", "results", "comparison"))
    if finetune:
        finetune["cpu_minutes"] = sum(r.get("finetune_seconds", 0) for r in report["results"].values()) / 60
    text = markdown(report)
    prefix = common.write(args.out, f"learning-{report['machine']}", report, text, echo=False)
    for path in plots(report, prefix):
        print(f"picture    {path}")
    print(text)
    return 0 if all(c["passed"] for c in report["comparison"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
