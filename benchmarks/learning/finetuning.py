"""Fine-tuning for the learning benchmarks, the study's protocol: the whole network trained by the
fine-tune command on few labelled images per class, one run per task, labels and seed, each
kept as soon as it is done (a killed benchmark loses at most the run in progress)."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.learning import ALL, FINETUNE, SEGMENTATION, SEGMENTATION_TASK, TASKS, label
from benchmarks.learning.cache import backbone_digest, keep, kept, safe_name


def finetune_score(checkpoint: str | None, arch: str, task: str, tasks_dir: Path, mapping, n: int,
                   seed: int, schedule: Path, folder: Path) -> float:
    """Test score of one run of the fine-tune command (the sweep's runs, with the schedule of
    ``schedule``): accuracy on ``n`` labelled images of each class (ALL: every one), or the
    segmentation task's Dice on ``n`` training patients, picked with ``seed``, which also seeds
    the run: random init (no checkpoint) draws its weights from it and is fed as ``mapping``
    says, like the backbone it is paired with."""
    from medssl.downstream.cli import finetune_cli
    from medssl.downstream.sweep import QUIET

    segmentation = task == SEGMENTATION
    kind, path = SEGMENTATION_TASK if segmentation else TASKS[task]
    data = ["--data.patients", str(n)] if segmentation else [] if n == ALL else ["--data.per_class", str(n)]
    if checkpoint is None:
        data += ["--data.intensity", json.dumps(mapping.intensity), "--data.mean", str(mapping.mean),
                 "--data.std", str(mapping.std)]
    cli = finetune_cli(["fit", "--config", str(schedule), *QUIET, "--data.kind", kind,
                        "--data.path", str(tasks_dir / path), *data, "--data.seed", str(seed),
                        "--seed_everything", str(seed), "--data.image_size", str(mapping.size),
                        "--data.num_workers", "0", "--model.arch", arch, "--model.checkpoint", checkpoint or "null",
                        "--trainer.default_root_dir", str(folder), "--trainer.logger", "false"], verbose=False)
    return float(cli.model.test_results["dice" if segmentation else "accuracy"])


def planned_runs(plan: dict) -> list[tuple[str, int, int]]:
    """(task, labels per class or training patients, seed) of every fine-tuning run of ``plan``."""
    runs = [(task, n, seed) for task in plan["tasks"] for n in plan["labels"] for seed in plan["seeds"]]
    segmentation = plan.get("segmentation")
    if segmentation:
        runs += [(SEGMENTATION, n, seed) for n in segmentation["patients"] for seed in segmentation["seeds"]]
    return runs


def finetune_scores(name: str, checkpoint: str | None, arch: str, mapping, tasks_dir: Path, plan: dict,
                    work: Path) -> tuple[dict, float]:
    """{task: {labels per class (segmentation: training patients): [test accuracy (Dice) per
    seed]}} by fine-tuning, for the runs of ``plan`` (``planned_runs``), and the seconds they
    took. Each run is kept in ``work/scores/finetune/<name>/`` and re-used by a later run with the
    same settings."""
    schedule = Path(plan["schedule"])
    same = {"name": name, "arch": arch, "input": mapping.as_dict(), "schedule": plan["schedule_settings"],
            "backbone_sha256": backbone_digest(checkpoint)}
    folder = work / "scores" / FINETUNE / safe_name(name)
    out, total = {}, 0.0
    for task, n, seed in planned_runs(plan):
        metric = "dice" if task == SEGMENTATION else "accuracy"
        settings = {**same, "task": task, "labels": n, "seed": seed}
        path = folder / f"{task}-{label(n)}-{seed}.json"
        run = kept(path, settings)
        if run is None:
            start = time.perf_counter()
            folder.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".run-", dir=folder))
            try:
                score = finetune_score(checkpoint, arch, task, tasks_dir, mapping, n, seed, schedule, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            run = {metric: score, "seconds": round(time.perf_counter() - start, 1)}
            keep(path, settings, **run)
            what = f"{n} patients" if task == SEGMENTATION else f"{label(n)} per class"
            print(f"  fine-tuned {name}: {task}, {what}, seed {seed}: {metric} {score:.3f} ({run['seconds']:g} s)",
                  flush=True)
        out.setdefault(task, {}).setdefault(n, []).append(run[metric])
        total += run["seconds"]
    return out, total


def with_finetuning(entry: dict, scores: tuple[dict, float]) -> dict:
    """``entry`` (its frozen-feature scores) with the fine-tuning ``scores`` beside them."""
    by_task, seconds = scores
    for task, by_n in by_task.items():
        entry["tasks"].setdefault(task, {"scores": {}})["scores"][FINETUNE] = by_n
    entry["finetune_seconds"] = seconds
    return entry
