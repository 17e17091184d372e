"""What the learning benchmarks conclude: each score's paired difference to random init with its
95 % interval, and each method's goal."""
from __future__ import annotations

import numpy as np

from benchmarks.learning import GOAL_LABELS, GOAL_PROTOCOL, PROTOCOLS, SEGMENTATION, TASKS


def compare(results: dict, methods: list[str]) -> dict:
    """Paired differences to random init, and each method's goal: by fine-tuning (the study's
    protocol), with GOAL_LABELS labels per class, on every task fine-tuned, the 95 % interval lies
    above zero (kNN and the linear probe are the second opinion, not part of the goal; the
    segmentation task's rows, Dice by training patients, are reported, not part of it either)."""
    from medssl.downstream.paired import paired_difference

    out = {}
    for method in methods:
        base = results[results[method]["baseline"]]
        rows, goal = [], []
        for task, record in results[method]["tasks"].items():
            for probe, by_n in record["scores"].items():
                for n, accuracies in by_n.items():
                    random = base["tasks"][task]["scores"][probe][n]
                    if len(accuracies) == 1:  # all labels: one subset, against every initial draw
                        accuracies = accuracies * len(random)
                    d = paired_difference(accuracies, random)
                    spread = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
                    rows.append({"task": task, "probe": probe, "labels": n, "accuracy": float(np.mean(accuracies)),
                                 "accuracy_std": spread, "random": float(np.mean(random)),
                                 "difference": d.mean, "low": d.low, "high": d.high, "n": d.n})
                    if probe == GOAL_PROTOCOL and n in GOAL_LABELS and task != SEGMENTATION:
                        goal.append(d.above)
        out[method] = {"rows": rows, "passed": bool(goal) and all(goal),
                       "goal_above": sum(goal), "goal_rows": len(goal)}
    return out


def row_of(comparison: dict, task: str, probe: str, n: int) -> dict | None:
    """One method's row of ``task``, ``probe`` and ``n`` labels per class, if it was scored."""
    return next((r for r in comparison["rows"] if (r["task"], r["probe"], r["labels"]) == (task, probe, n)), None)


def tasks_of(report: dict) -> list[str]:
    """The tasks the report scored: the classification tasks, then segmentation if it ran."""
    seen = {r["task"] for comp in report["comparison"].values() for r in comp["rows"]}
    return [t for t in TASKS if t in seen] + ([SEGMENTATION] if SEGMENTATION in seen else [])


def protocols_of(report: dict) -> list[str]:
    """The protocols the report scored, in PROTOCOLS order."""
    seen = {r["probe"] for comp in report["comparison"].values() for r in comp["rows"]}
    return [p for p in PROTOCOLS if p in seen]
