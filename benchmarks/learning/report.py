"""The learning benchmark's Markdown report: how it was run, each method's pre-training and goal,
then per task every score with its difference to random init."""
from __future__ import annotations

import numpy as np

from benchmarks.common import command_lines
from benchmarks.learning import ALL, GOAL_LABELS, GOAL_PROTOCOL, QUICK_SCHEDULE, SEGMENTATION, label
from benchmarks.learning.comparison import protocols_of, row_of, tasks_of
from benchmarks.learning.options import schedule_settings


def schedule_words(settings: dict) -> str:
    """The fine-tuning schedule as the report names it: the study's protocol when it is the quick
    schedule's, otherwise said to be another."""
    if settings == schedule_settings(QUICK_SCHEDULE):
        return f"the study's protocol, schedule {settings}"
    return f"the study's protocol with another schedule than {QUICK_SCHEDULE.name}: {settings}"


def markdown(report: dict) -> str:
    s = report["settings"]
    ft = s.get("finetune")
    lines = [f"# Learning benchmark on {report['machine']}", "", *command_lines(report),
             f"- {report['device']}; torch {report['torch']}; {report['date']}",
             f"- pre-training: each method's quick config ({s['arch']}), "
             f"{str(s['steps']) + ' steps' if s.get('steps') else format(s['minutes'], 'g') + ' min'} on the phantom "
             f"store ({s['workers']} data workers)",
             f"- frozen features (kNN, linear probe): {', '.join(label(n) for n in s['labels'])} labels per class, "
             f"{len(s['seeds'])} label-subset seeds"]
    if s.get("phantom"):
        lines.append(f"- phantom tasks: {phantom_counts(s['phantom'])}")
    if ft:
        lines.append(f"- fine-tuning ({schedule_words(ft['schedule_settings'])}): "
                     f"{', '.join(label(n) for n in ft['labels'])} labels per class, {len(ft['seeds'])} seeds, "
                     f"tasks {', '.join(ft['tasks'])}; {ft.get('cpu_minutes', 0):.0f} CPU-minutes of runs")
        if ft.get("segmentation"):
            seg = ft["segmentation"]
            lines.append(f"- segmentation (phantom organs and lesions, fine-tuned with the same schedule): "
                         f"{', '.join(map(str, seg['patients']))} training patients, {len(seg['seeds'])} seeds; "
                         "mean Dice over the classes other than the background, per test patient; not in the goal")
    lines += ["- random init: one draw of weights per seed, paired with that seed's subset",
              f"- goal: by {GOAL_PROTOCOL} with {' and '.join(map(str, GOAL_LABELS))} labels per class, on every "
              "task fine-tuned, the 95 % interval of the paired difference to random init lies above zero; "
              "kNN and the linear probe are reported beside it", ""]
    lines += ["| method | steps | loss first -> last | effective rank (organ; random) | goal |",
              "|---|---:|---|---|---|"]
    for method, comp in report["comparison"].items():
        pre, res = report["pretraining"][method], report["results"][method]
        loss = pre["loss"]
        first_last = f"{loss[0][1]:.3f} -> {loss[-1][1]:.3f}" if loss else ""
        rank, base_rank = (report["results"][name]["tasks"]["organ"]["effective_rank"]
                           for name in (method, res["baseline"]))
        lines.append(f"| {method} | {pre['steps']} | {first_last} | {rank:.0f}; {base_rank:.0f} | "
                     f"{'PASS' if comp['passed'] else 'MISS'} ({comp['goal_above']} of {comp['goal_rows']} "
                     "above zero) |")
    return "\n".join(lines + scores_tables(report)) + "\n"


def phantom_counts(tasks: dict) -> str:
    """The phantom tasks' images per class, as ``tasks.json`` counts them."""
    c = tasks["counts"]
    return (f"organ {c['organ_per_class']}, COVID {c['covid_per_class']} + {c.get('covid_extra_test_per_class', 0)} "
            f"test, brain {c['brain_per_class']} + {c.get('brain_extra_test_per_class', 0)} test images per class "
            f"(before the train / val / test split, then test images added); segmentation "
            f"{c.get('segmentation_patients')} patients; seed {tasks['seed']}")


def scores_tables(report: dict) -> list[str]:
    """Per task: each method's and protocol's accuracy (segmentation: Dice) and difference to
    random init."""
    lines = []
    for task in tasks_of(report):
        labels = sorted({r["labels"] for comp in report["comparison"].values() for r in comp["rows"]
                         if r["task"] == task}, key=lambda n: (n == ALL, n))
        score, unit = ("Dice", "patients") if task == SEGMENTATION else ("accuracy", "/ class")
        lines += ["", f"## {task}: test {score}, mean +- std over seeds; difference to random init "
                  "[95 % interval]", "",
                  "| method | protocol | " + " | ".join(f"{label(n)} {unit}" for n in labels) + " |",
                  "|---|---|" + "---|" * len(labels)]
        for method, comp in report["comparison"].items():
            for probe in protocols_of(report):
                cells = []
                for n in labels:
                    r = row_of(comp, task, probe, n)
                    if r is None:
                        cells.append("")
                        continue
                    interval = "" if np.isnan(r["low"]) else f" [{r['low']:+.3f}, {r['high']:+.3f}]"
                    cells.append(f"{r['accuracy']:.3f} +- {r['accuracy_std']:.3f}; "
                                 f"{r['difference']:+.3f}{interval} (random {r['random']:.3f})")
                if any(cells):
                    lines.append(f"| {method} | {probe} | " + " | ".join(cells) + " |")
    return lines
