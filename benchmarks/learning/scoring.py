"""Scoring for the learning benchmarks: every backbone and random init at that backbone's input,
by the frozen-feature probes and, with a plan, by fine-tuning; each entry kept as it is done."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from benchmarks.learning import PROBES, RANDOM, TASKS
from benchmarks.learning.cache import kept_scores
from benchmarks.learning.finetuning import finetune_scores, with_finetuning
from benchmarks.learning.probes import all_features, effective_rank, features, input_of, scores


def evaluate(backbones: dict, arch: str, tasks_dir: Path, labels, seeds, work: Path | None = None,
             finetune: dict | None = None) -> dict:
    """Scores and effective ranks of every backbone and of random init at each backbone's input;
    with ``finetune`` (``tasks``, ``labels``, ``seeds``, ``schedule``: see ``finetune_scores``,
    which needs ``work``), fine-tuning scores beside the frozen features' ones.

    Random init is one draw of weights per seed: seed ``s`` scores init ``s`` on label subset
    ``s``, so the paired difference to a backbone (subset ``s`` too) carries the spread of both
    the subsets and the initial weights. With all labels, one subset: every init scores it.

    With ``work``, each entry's scores are kept in ``work/scores/`` (``cache``)."""
    from medssl.downstream.tasks import load_task

    tasks = {name: load_task(kind, tasks_dir / path, progress=False) for name, (kind, path) in TASKS.items()}
    results = {}
    for method, checkpoint in backbones.items():
        mapping = input_of(checkpoint)
        key = f"{RANDOM} ({mapping.size} px, {mapping.intensity['mode']}, {mapping.mean:g}/{mapping.std:g})"
        if key not in results:
            results[key] = kept_scores(work, key, None, arch, mapping, labels, seeds, partial(
                score_random, key, tasks, arch, mapping, labels, seeds))
            if finetune:
                with_finetuning(results[key], finetune_scores(key, None, arch, mapping, tasks_dir, finetune, work))
        results[method] = kept_scores(work, method, checkpoint, arch, mapping, labels, seeds, partial(
            score_backbone, method, checkpoint, key, tasks, arch, mapping, labels, seeds))
        if finetune:
            with_finetuning(results[method], finetune_scores(method, checkpoint, arch, mapping, tasks_dir,
                                                             finetune, work))
    return results


def score_random(key: str, tasks: dict, arch: str, mapping, labels, seeds) -> dict:
    print(f"  evaluating {key}, {len(seeds)} initial weights: {mapping.describe()}", flush=True)
    entry = {"input": mapping.as_dict(), "init_seeds": list(seeds), "tasks": {}}
    for task_name, task in tasks.items():
        runs = [(seed, features(None, arch, task, mapping, init_seed=seed)) for seed in seeds]
        merged = [scores(feats, len(task.classes), labels, [seed]) for seed, feats in runs]
        entry["tasks"][task_name] = {
            "scores": {probe: {n: [a for m in merged for a in m[probe][n]] for n in labels} for probe in PROBES},
            "effective_rank": float(np.mean([effective_rank(all_features(f)) for _, f in runs])),
            "train_per_class": int(np.bincount(runs[0][1]["train"][1]).min())}
    return entry


def score_backbone(method: str, checkpoint: str, baseline: str, tasks: dict, arch: str, mapping, labels,
                   seeds) -> dict:
    print(f"  evaluating {method}: {mapping.describe()}", flush=True)
    entry = {"input": mapping.as_dict(), "baseline": baseline, "tasks": {}}
    for task_name, task in tasks.items():
        feats = features(checkpoint, arch, task, mapping)
        entry["tasks"][task_name] = {
            "scores": scores(feats, len(task.classes), labels, seeds),
            "effective_rank": effective_rank(all_features(feats)),
            "train_per_class": int(np.bincount(feats["train"][1]).min())}
    return entry
