"""How much compute does each method need? Learning curves.

Each method pre-trains once on the phantom store with its quick config for a long budget (60
minutes for SparK, SimCLR and MoCo v2, 20 for the others by default), and its backbone is exported
as the run's training time passes each mark (``medssl.pretrain.callbacks.ExportAtMinutes``: 2.5, 5,
10, 20, 40 minutes) and at the end. Every backbone is scored as in the learning benchmark
(``python -m benchmarks.learning``): frozen features by kNN and the linear probe, and fine-tuning (the
dear protocol: by default the organ task only, 3 seeds), each paired with random init. The report
gives, per method and protocol, the difference to random init against pre-training minutes,
steps and images seen, and the first mark at which its 95 % interval clears zero.

The marks lie on one run, whose schedules (learning rate, momentum, weight decay) stretch over
its whole budget: the backbone at 10 minutes of a 60-minute run is not a 10-minute run's.

    python -m benchmarks.curves                                   # resumable; hours on a CPU
    python -m benchmarks.curves --methods spark --minutes 60 --finetune-seeds 3

Runs and scores are kept in ``--work`` (``learning-work`` by default: the phantom data and the
random-init scores are the learning benchmark's). Written: benchmarks/results/
curves-<machine>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

from benchmarks import common
from benchmarks.learning import GOAL_LABELS, label
from benchmarks.learning.comparison import compare
from benchmarks.learning.figures import panels, save
from benchmarks.learning.options import finetune_plan, parse, scoring_arguments
from benchmarks.learning.pretraining import phantom, phantom_tasks, pretrain
from benchmarks.learning.scoring import evaluate

LONG = ("spark", "simclr", "mocov2")  # 60 minutes; the others 20
MARKS = (2.5, 5.0, 10.0, 20.0, 40.0)


def budget(method: str, minutes: float | None) -> float:
    return minutes if minutes is not None else (60.0 if method in LONG else 20.0)


def checkpoints(method: str, run: dict, run_dir: Path, minutes: float, marks) -> dict[float, dict]:
    """{training minutes: {"backbone", "steps"}} of the ``marks`` the run passed, and its end."""
    out = {}
    for mark in marks:
        path = run_dir / "backbones" / f"{method}_backbone_{mark:g}min.pt"
        if mark < minutes and path.exists():
            meta = torch.load(path, map_location="cpu", weights_only=True)
            out[mark] = {"backbone": str(path), "steps": meta["steps"]}
    out[minutes] = {"backbone": run["backbone"], "steps": run["steps"]}
    return out


def first_clear(points: list[dict]) -> float | None:
    """The first minutes at which the interval lies above zero (and stays there at every later mark)."""
    for i, p in enumerate(points):
        if all(q["low"] > 0 for q in points[i:]):
            return p["minutes"]
    return None


def curves(comparison: dict, marks: dict, method: str) -> dict:
    """{(task, protocol, labels): [points by minutes]} of one method."""
    out = {}
    for minutes, info in sorted(marks.items()):
        for row in comparison[f"{method}@{minutes:g}min"]["rows"]:
            key = f"{row['task']}/{row['probe']}/{label(row['labels'])}"
            out.setdefault(key, []).append({"minutes": minutes, "steps": info["steps"], "images": info["images"],
                                            **{k: row[k] for k in ("difference", "low", "high", "accuracy",
                                                                   "random")}})
    return out


def cpu_minutes(report: dict) -> dict:
    """CPU minutes of pre-training (a run's seconds; in a report written before they were kept,
    its budget) and of fine-tuning (every backbone's runs, random init's included), and the
    methods whose fine-tuning time an earlier report did not keep per backbone."""
    methods = report["methods"]
    seconds = report["finetune_seconds"]
    return {"pretraining": sum(e.get("pretraining_seconds", e["minutes"] * 60) for e in methods.values()) / 60,
            "finetuning": sum(seconds.values()) / 60,
            "finetuning_unknown": [m for m in methods if not any(k.startswith(f"{m}@") for k in seconds)]}


def markdown(report: dict) -> str:
    s = report["settings"]
    ft = s["finetune"]
    lines = [f"# Learning curves on {report['machine']}", "", *common.command_lines(report),
             f"- {report['device']}; torch {report['torch']}; {report['date']}",
             f"- frozen features: {', '.join(map(label, s['labels']))} labels per class, {s['seeds']} seeds; "
             f"fine-tuning: tasks {', '.join(ft['tasks'])}, {', '.join(map(label, ft['labels']))} "
             f"labels per class, {len(ft['seeds'])} seeds, schedule {ft['schedule_settings']}",
             f"- CPU time: pre-training {report['cpu_minutes']['pretraining']:.0f} min, fine-tuning "
             f"{report['cpu_minutes']['finetuning']:.0f} min"
             + "".join(f" (and {', '.join(unknown)}'s, not kept per backbone by an earlier report)"
                       for unknown in [report["cpu_minutes"].get("finetuning_unknown")] if unknown), "",
             "Difference to random init in accuracy [95 % interval] at each mark (minutes of pre-training); "
             "'clears zero at': the first mark from which every interval lies above zero.", ""]
    for method, entry in report["methods"].items():
        marks = sorted(entry["marks"], key=float)
        lines += [f"## {method} ({entry['minutes']:g} min, {entry['marks'][marks[-1]]['steps']} steps)", "",
                  "| task / protocol / labels per class | " + " | ".join(f"{float(m):g} min" for m in marks)
                  + " | clears zero at |", "|---|" + "---|" * (len(marks) + 1)]
        for key, points in entry["curves"].items():
            cells = [f"{p['difference']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]" for p in points]
            clear = first_clear(points)
            at = f"not within {entry['minutes']:g} min" if clear is None else f"{clear:g} min"
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {at} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    keys = sorted({k for e in report["methods"].values() for k in e["curves"]
                   if k.startswith("organ/")}) or sorted({k for e in report["methods"].values() for k in e["curves"]})
    fig, axes = panels(len(keys), 3, (4.2, 3.2))
    for ax, key in zip(axes.flat, keys):
        for method, entry in report["methods"].items():
            points = entry["curves"].get(key)
            if points:
                x = [p["minutes"] for p in points]
                ax.plot(x, [p["difference"] for p in points], marker="o", label=method)
                ax.fill_between(x, [p["low"] for p in points], [p["high"] for p in points], alpha=0.2)
        ax.axhline(0, color="grey", lw=1)
        ax.set_title(key.replace("/", ", ") + " per class", fontsize=9)
        ax.set_xlabel("pre-training minutes (CPU)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy - random init")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=common.methods(), default=common.methods())
    ap.add_argument("--minutes", type=float, help="pre-training budget of every method (default: 60 for "
                    f"{', '.join(LONG)}, 20 for the others)")
    ap.add_argument("--marks", nargs="+", type=float, default=list(MARKS), help="minutes at which backbones are kept")
    scoring_arguments(ap, labels=list(GOAL_LABELS), finetune_labels=[5], finetune_seeds=3, finetune_tasks=["organ"],
                      work="learning-work")
    args = parse(ap, argv)
    torch.set_num_threads(common.cores())
    seeds = list(range(args.seeds))
    plan = finetune_plan(args)
    settings = {"labels": args.labels, "seeds": args.seeds, "finetune": plan, "methods": args.methods,
                "phantom": phantom_tasks(args.work)}
    earlier = common.earlier_report(args.add_to, "curves", settings)
    root = phantom(args.work)
    methods, finetune_seconds = {}, {}
    for method in args.methods:
        minutes = budget(method, args.minutes)
        config = common.quick_config(method, args.configs)
        run_dir = args.work / "curves" / method
        marks_arg = json.dumps([m for m in args.marks if m < minutes])
        run = pretrain(method, config, root / "store", run_dir, minutes, args.workers, extra=(
            "--trainer.callbacks+=medssl.pretrain.callbacks.ExportAtMinutes", "--trainer.callbacks.minutes",
            marks_arg))
        batch = yaml.safe_load(config.read_text())["data"]["batch_size"]
        marks = checkpoints(method, run, run_dir, minutes, args.marks)
        for info in marks.values():
            info["images"] = info["steps"] * batch
        arch = yaml.safe_load(config.read_text())["model"]["arch"]
        backbones = {f"{method}@{m:g}min": info["backbone"] for m, info in marks.items()}
        results = evaluate(backbones, arch, root / "tasks", args.labels, seeds, args.work, plan)
        finetune_seconds.update({name: entry.get("finetune_seconds", 0) for name, entry in results.items()})
        comparison = compare(results, list(backbones))
        methods[method] = {"minutes": minutes, "marks": {f"{m:g}": info for m, info in marks.items()},
                           "curves": curves(comparison, marks, method), "loss": run["loss"],
                           "pretraining_seconds": run["seconds"]}
    report = common.add_to(earlier, {**common.header("curves", argv), "settings": settings, "methods": methods,
                                     "finetune_seconds": finetune_seconds}, ("methods", "finetune_seconds"))
    report["cpu_minutes"] = cpu_minutes(report)
    text = markdown(report)
    prefix = common.write(args.out, f"curves-{report['machine']}", report, text, echo=False)
    print(f"picture    {plot(report, prefix.with_name(prefix.name + '.png'))}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
