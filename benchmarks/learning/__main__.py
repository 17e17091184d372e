"""Does pre-training help? The learning benchmark.

Every registered method pre-trains on the phantom slice store for a fixed time with its quick
config (``Pre-Training/configs/<method>_quick.yaml``), and its backbone is exported. Then the
frozen features of each backbone and of random initialisation are scored on the three phantom
tasks with few labelled images per class, by the kNN vote and by the linear probe (the
downstream ``knn`` and ``linear`` modes), over several label-subset seeds. Each method's
paired difference to random init (same subsets, same test images, same input mapping and size)
is printed with its 95 % interval.

Goal (PASS / MISS per method): on the organ task, with 5 and with 10 labels per class, by kNN
and by the linear probe, the interval of the difference to random init lies above zero.

    python benchmarks/learning.py                          # every method, 10 minutes each
    python benchmarks/learning.py --minutes 3 --methods swav spark --work /tmp/learning

The benchmark is resumable: the same command again goes on with the pre-training runs that did
not finish and re-uses those that did, and the scores of each backbone and of random init as soon
as they are done (``--work`` keeps them: runs, then ``scores/``). Written: benchmarks/results/
learning-<machine>.{json,md} and learning-<machine>-*.png (loss curves, views, accuracy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = ROOT / "Pre-Training" / "configs"  # the quick configs (--configs: another folder)
RANDOM = "random"
TASKS = {"organ": ("medmnist", "organsmnist_phantom.npz"), "covid": ("covid", "covid"),
         "brain": ("brain", "brain")}
PROBES = ("knn", "linear")  # frozen features
FINETUNE = "finetune"  # the study's protocol: the whole network trained
PROTOCOLS = (FINETUNE, *PROBES)
GOAL_LABELS, GOAL_PROTOCOL = (5, 10), FINETUNE
ALL = 0  # "every training image" in --labels
# the fine-tune schedule of the benchmark and the demo (trainer.max_epochs, model.freeze_epochs)
QUICK_SCHEDULE = ROOT / "Downstream" / "configs" / "finetune_quick.yaml"


def registered() -> list[str]:
    from medssl.pretrain.methods import METHODS

    return sorted(METHODS)


# --- data ------------------------------------------------------------------------------------
def phantom(work: Path) -> Path:
    """The phantom store and tasks under ``work/phantom`` (made once)."""
    from medssl.data.phantom import write_phantom_store
    from medssl.data.phantom_tasks import write_phantom_tasks

    root = work / "phantom"
    if not (root / "store" / "store.json").exists():
        write_phantom_store(root / "store", patients=40, slices_per_patient=32, size=64, seed=0, overwrite=True)
    if not (root / "tasks" / "tasks.json").exists():
        write_phantom_tasks(root / "tasks", seed=0, overwrite=True)
    return root


# --- pre-training ----------------------------------------------------------------------------
def max_time(minutes: float) -> str:
    seconds = int(round(minutes * 60))
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def pretrain(method: str, config: Path, store: Path, run_dir: Path, minutes: float, workers: int,
             steps: int | None = None, extra: tuple[str, ...] = ()) -> dict:
    """Pre-train ``method`` with ``config`` for ``minutes`` or ``steps`` (resuming a run cut
    short), ``extra``: more arguments of the pre-training command; its backbone and figures."""
    backbone = run_dir / f"{method}_backbone.pt"
    done = run_dir / "benchmark-done.json"
    if done.exists():
        return json.loads(done.read_text())
    command = [sys.executable, "-m", "medssl.pretrain", method, "fit",
               "--config", str(config), "--data.store", str(store),
               "--data.num_workers", str(workers), "--trainer.max_epochs", "-1",
               *(["--trainer.max_steps", str(steps)] if steps else ["--trainer.max_time", max_time(minutes)]),
               "--trainer.default_root_dir", str(run_dir),
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]
    budget = f"{steps} steps" if steps else f"{minutes:g} min"
    print(f"  pre-training {method} for {budget}: {shlex.join(command[1:])}", flush=True)
    start = time.perf_counter()
    log = run_dir / "pretrain.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0 or not backbone.exists():
        raise RuntimeError(f"pre-training {method} failed (exit {status}); see {log}")
    meta = torch.load(backbone, map_location="cpu", weights_only=True)
    record = {"backbone": str(backbone), "steps": meta["steps"], "epochs": meta["epochs"],
              "seconds": round(time.perf_counter() - start, 1), "loss": loss_curve(run_dir)}
    done.write_text(json.dumps(record))
    return record


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train/loss) from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            points += [(e.step, e.value) for e in acc.Scalars("train/loss")]
    return sorted(dict(points).items())


# --- features --------------------------------------------------------------------------------
def input_of(checkpoint: str | None, config: Path | None = None):
    """The ``InputMapping`` the backbone saw in pre-training (random init: its pre-training
    ``config``'s, so that a pair differs in the weights only)."""
    from medssl.checkpoints import read_input
    from medssl.data.input_mapping import InputMapping
    from medssl.pretrain.views import ViewSpec

    if checkpoint is not None:
        return read_input(checkpoint)[0]
    data = yaml.safe_load(config.read_text())["data"]
    return InputMapping.of_pretraining(data.get("intensity"), ViewSpec.of(data["views"][0]))


@torch.no_grad()
def features(checkpoint: str | None, arch: str, task, mapping, init_seed: int = 0) -> dict:
    """{split: (L2-normalised pooled features, labels)} of a frozen backbone (eval mode), the
    images fed as ``mapping`` says, at its size. Random init (no checkpoint) draws its weights
    with ``init_seed``."""
    from torch.utils.data import DataLoader

    from medssl.downstream.datamodule import TaskImages
    from medssl.downstream.finetune import FineTune

    torch.manual_seed(init_seed)
    model = FineTune(len(task.classes), checkpoint=checkpoint, arch=arch).eval()
    out = {}
    for split in ("train", "val", "test"):
        data = TaskImages(task, split, range(len(task.splits[split])), mapping.size, False, mapping)
        feats = [model.features(x) for x, _ in DataLoader(data, batch_size=128)]
        out[split] = (torch.cat(feats).numpy(), task.splits[split].labels.astype(np.int64))
    return out


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of centred features: how many directions
    they use (a collapsed representation uses few)."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p + 1e-12)).sum()))


def scores(feats: dict, num_classes: int, labels: list[int], seeds: list[int]) -> dict:
    """{probe: {labels per class: [test accuracy per seed]}}."""
    from medssl.downstream.knn import KNN
    from medssl.downstream.linear_probe import LinearProbe
    from medssl.downstream.subsets import per_class_subsets

    (xtr, ytr), val, (xte, yte) = feats["train"], feats["val"], feats["test"]
    xtr, xte = torch.from_numpy(xtr), torch.from_numpy(xte)
    out = {probe: {} for probe in PROBES}
    for n in labels:
        for seed in seeds[:1] if n == ALL else seeds:  # every seed would pick the same images
            pick = np.arange(len(ytr)) if n == ALL else per_class_subsets(ytr, [n], seed)[n]
            x, y = xtr[pick], torch.from_numpy(ytr[pick])
            knn = KNN(x, y, num_classes).predict(xte).numpy()
            linear = LinearProbe(x, y, num_classes, val=val).predict(xte).numpy()
            out["knn"].setdefault(n, []).append(float((knn == yte).mean()))
            out["linear"].setdefault(n, []).append(float((linear == yte).mean()))
    return out


# --- fine-tuning: the study's protocol --------------------------------------------------------
def finetune_accuracy(checkpoint: str | None, arch: str, task: str, tasks_dir: Path, mapping, per_class: int,
                      seed: int, schedule: Path, folder: Path) -> float:
    """Test accuracy of one run of the fine-tune command (the sweep's runs, with the schedule of
    ``schedule``) on ``per_class`` labelled images of each class (ALL: every one) picked with
    ``seed``, which also seeds the run: random init (no checkpoint) draws its weights from it and
    is fed as ``mapping`` says, like the backbone it is paired with."""
    from medssl.downstream.cli import finetune_cli
    from medssl.downstream.sweep import QUIET

    kind, path = TASKS[task]
    data = [] if per_class == ALL else ["--data.per_class", str(per_class)]
    if checkpoint is None:
        data += ["--data.intensity", json.dumps(mapping.intensity), "--data.mean", str(mapping.mean),
                 "--data.std", str(mapping.std)]
    cli = finetune_cli(["fit", "--config", str(schedule), *QUIET, "--data.kind", kind,
                        "--data.path", str(tasks_dir / path), *data, "--data.seed", str(seed),
                        "--seed_everything", str(seed), "--data.image_size", str(mapping.size),
                        "--data.num_workers", "0", "--model.arch", arch, "--model.checkpoint", checkpoint or "null",
                        "--trainer.default_root_dir", str(folder), "--trainer.logger", "false"], verbose=False)
    return float(cli.model.test_results["accuracy"])


def finetune_scores(name: str, checkpoint: str | None, arch: str, mapping, tasks_dir: Path, plan: dict,
                    work: Path) -> tuple[dict, float]:
    """{task: {labels per class: [test accuracy per seed]}} by fine-tuning, for the tasks, labels
    and seeds of ``plan``, and the seconds its runs took. Each run is kept in
    ``work/scores/finetune/<name>/`` as soon as it is done and re-used by a later run with the same
    settings (fine-tuning is the dear protocol: a killed benchmark loses at most the run in progress)."""
    import shutil
    import tempfile

    from medssl.checksums import file_digest
    from medssl.files import atomic_write_bytes

    same = {"name": name, "arch": arch, "input": mapping.as_dict(),
            "schedule": yaml.safe_load(Path(plan["schedule"]).read_text()),
            "backbone_sha256": file_digest(Path(checkpoint)) if checkpoint else None}
    folder = work / "scores" / FINETUNE / safe_name(name)
    out, total = {}, 0.0
    for task in plan["tasks"]:
        for n in plan["labels"]:
            for seed in plan["seeds"]:
                settings = {**same, "task": task, "labels": n, "seed": seed}
                path = folder / f"{task}-{label(n)}-{seed}.json"
                kept = json.loads(path.read_text()) if path.exists() else {}
                if kept.get("settings") == json.loads(json.dumps(settings)):
                    accuracy, seconds = kept["accuracy"], kept["seconds"]
                else:
                    start = time.perf_counter()
                    folder.mkdir(parents=True, exist_ok=True)
                    scratch = Path(tempfile.mkdtemp(prefix=".run-", dir=folder))
                    try:
                        accuracy = finetune_accuracy(checkpoint, arch, task, tasks_dir, mapping, n, seed,
                                                     Path(plan["schedule"]), scratch)
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                    seconds = round(time.perf_counter() - start, 1)
                    atomic_write_bytes(path, json.dumps({"settings": settings, "accuracy": accuracy,
                                                         "seconds": seconds}).encode())
                    print(f"  fine-tuned {name}: {task}, {label(n)} per class, seed {seed}: "
                          f"accuracy {accuracy:.3f} ({seconds:g} s)", flush=True)
                out.setdefault(task, {}).setdefault(n, []).append(accuracy)
                total += seconds
    return out, total


def with_finetuning(entry: dict, scores: tuple[dict, float]) -> dict:
    by_task, seconds = scores
    for task, by_n in by_task.items():
        entry["tasks"][task]["scores"][FINETUNE] = by_n
    entry["finetune_seconds"] = seconds
    return entry


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.]+", "-", name).strip("-")


# --- the run ---------------------------------------------------------------------------------
def evaluate(backbones: dict, arch: str, tasks_dir: Path, labels, seeds, work: Path | None = None,
             finetune: dict | None = None) -> dict:
    """Scores and effective ranks of every backbone and of random init at each backbone's input;
    with ``finetune`` (``tasks``, ``labels``, ``seeds``, ``schedule``: see ``finetune_scores``,
    which needs ``work``), fine-tuning scores beside the frozen features' ones.

    Random init is one draw of weights per seed: seed ``s`` scores init ``s`` on label subset
    ``s``, so the paired difference to a backbone (subset ``s`` too) carries the spread of both
    the subsets and the initial weights. With all labels, one subset: every init scores it.

    With ``work``, each entry's scores are kept in ``work/scores/`` as soon as they are done, and
    re-used by a later run with the same settings and the same backbone file (a run killed while
    scoring goes on from the entry it was at)."""
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


def kept_scores(work: Path | None, name: str, checkpoint: str | None, arch: str, mapping, labels, seeds,
                score) -> dict:
    """``score()``, or the scores a run with the same settings kept in ``work/scores/``."""
    if work is None:
        return score()
    from medssl.checksums import file_digest

    settings = {"name": name, "arch": arch, "input": mapping.as_dict(), "labels": list(labels),
                "seeds": list(seeds), "backbone_sha256": file_digest(Path(checkpoint)) if checkpoint else None}
    path = work / "scores" / (safe_name(name) + ".json")
    if path.exists():
        kept = json.loads(path.read_text())
        if kept["settings"] == json.loads(json.dumps(settings)):
            print(f"  scores of {name}: kept from an earlier run ({path})", flush=True)
            return with_int_label_keys(kept["entry"])
    entry = score()
    path.parent.mkdir(parents=True, exist_ok=True)
    unfinished = path.with_suffix(".partial")
    unfinished.write_text(json.dumps({"settings": settings, "entry": entry}))
    unfinished.replace(path)  # whole or absent, whenever the run is killed
    return entry


def with_int_label_keys(entry: dict) -> dict:
    """JSON keeps the labels-per-class keys as strings; the comparison wants the numbers."""
    for record in entry["tasks"].values():
        record["scores"] = {probe: {int(n): v for n, v in by_n.items()} for probe, by_n in record["scores"].items()}
    return entry


def all_features(feats: dict) -> np.ndarray:
    return np.concatenate([feats[split][0] for split in feats])


def compare(results: dict, methods: list[str]) -> dict:
    """Paired differences to random init, and each method's goal: by fine-tuning (the study's
    protocol), with GOAL_LABELS labels per class, on every task fine-tuned, the 95 % interval lies
    above zero (kNN and the linear probe are the second opinion, not part of the goal)."""
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
                    if probe == GOAL_PROTOCOL and n in GOAL_LABELS:
                        goal.append(d.above)
        out[method] = {"rows": rows, "passed": bool(goal) and all(goal)}
    return out


def row_of(comparison: dict, task: str, probe: str, n: int) -> dict | None:
    return next((r for r in comparison["rows"] if (r["task"], r["probe"], r["labels"]) == (task, probe, n)), None)


def protocols_of(report: dict) -> list[str]:
    """The protocols the report scored, in PROTOCOLS order."""
    seen = {r["probe"] for comp in report["comparison"].values() for r in comp["rows"]}
    return [p for p in PROTOCOLS if p in seen]


def cores() -> int:
    """The cores this process may use (``taskset`` narrows them; ``os.cpu_count`` does not)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    return f"{platform.machine()}-{os.cpu_count()}cpu"


def label(n: int) -> str:
    return "all" if n == ALL else str(n)


def markdown(report: dict) -> str:
    s = report["settings"]
    ft = s.get("finetune")
    lines = [f"# Learning benchmark on {report['machine']}", "",
             f"- command: `{report['command']}`",
             f"- {report['device']}; torch {report['torch']}; {report['date']}",
             f"- pre-training: each method's quick config ({s['arch']}), "
             f"{str(s['steps']) + ' steps' if s.get('steps') else format(s['minutes'], 'g') + ' min'} on the phantom "
             f"store ({s['workers']} data workers)",
             f"- frozen features (kNN, linear probe): {', '.join(label(n) for n in s['labels'])} labels per class, "
             f"{len(s['seeds'])} label-subset seeds"]
    if ft:
        lines.append(f"- fine-tuning (the study's protocol, schedule {ft['schedule_settings']}): "
                     f"{', '.join(label(n) for n in ft['labels'])} labels per class, {len(ft['seeds'])} seeds, "
                     f"tasks {', '.join(ft['tasks'])}; {ft.get('cpu_minutes', 0):.0f} CPU-minutes of runs")
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
                     f"{'PASS' if comp['passed'] else 'MISS'} |")
    labels = sorted({r["labels"] for comp in report["comparison"].values() for r in comp["rows"]},
                    key=lambda n: (n == ALL, n))
    for task in TASKS:
        lines += ["", f"## {task}: test accuracy, mean +- std over seeds; difference to random init "
                  "[95 % interval]", "",
                  "| method | protocol | " + " | ".join(f"{label(n)} / class" for n in labels) + " |",
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
    return "\n".join(lines) + "\n"


def panels(count: int, most_columns: int, size: tuple[float, float]):
    """A matplotlib figure of ``count`` panels in rows of at most ``most_columns`` (each ``size``
    inches), the spare ones hidden; (figure, axes as a 2-D array)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(most_columns, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def plots(report: dict, prefix: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    methods = list(report["comparison"])
    fig, axes = panels(len(methods), 4, (3.6, 3))
    for ax, method in zip(axes.flat, methods):
        steps, loss = zip(*report["pretraining"][method]["loss"]) if report["pretraining"][method]["loss"] else ((), ())
        ax.plot(steps, loss)
        ax.set_title(method)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("training loss")
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "-loss.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    protocols = protocols_of(report)
    fig, axes = plt.subplots(len(protocols), len(TASKS), figsize=(4 * len(TASKS), 3.2 * len(protocols)),
                             squeeze=False)
    for row, probe in zip(axes, protocols):
        for ax, task in zip(row, TASKS):
            ticks = set()
            for method, comp in report["comparison"].items():
                rs = sorted((r for r in comp["rows"] if (r["task"], r["probe"]) == (task, probe)
                             and r["labels"] != ALL), key=lambda r: r["labels"])
                if not rs:
                    continue
                labels = [r["labels"] for r in rs]
                ticks.update(labels)
                ax.plot(labels, [r["difference"] for r in rs], marker="o", label=method)
                ax.fill_between(labels, [r["low"] for r in rs], [r["high"] for r in rs], alpha=0.2)
            ax.axhline(0, color="grey", lw=1)
            ax.set_xscale("log")
            ax.set_xticks(sorted(ticks), [str(n) for n in sorted(ticks)])
            ax.minorticks_off()  # a log axis labels its minor ticks too ("6 x 10^0")
            ax.set_title(f"{task}, {probe}")
            ax.set_xlabel("labels per class")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("accuracy - random init")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "-difference.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths


def scoring_arguments(ap: argparse.ArgumentParser, *, labels, finetune_labels, finetune_seeds: int,
                      finetune_tasks, work: str) -> None:
    """The options of scoring and of the work folder, shared by this benchmark, the views ablation
    and the learning curves (each with its own defaults)."""
    ap.add_argument("--labels", nargs="+", type=int, default=labels,
                    help="labelled images per class of the frozen-feature probes (0: all of the training split)")
    ap.add_argument("--seeds", type=int, default=10, help="label-subset seeds of the frozen-feature probes")
    ap.add_argument("--finetune-labels", nargs="+", type=int, default=finetune_labels,
                    help="labelled images per class fine-tuned (0: all)")
    ap.add_argument("--finetune-seeds", type=int, default=finetune_seeds, help="fine-tuning seeds (0: no fine-tuning)")
    ap.add_argument("--finetune-tasks", nargs="+", choices=list(TASKS), default=finetune_tasks)
    ap.add_argument("--finetune-schedule", type=Path, default=QUICK_SCHEDULE,
                    help="fine-tune config with the schedule (trainer.max_epochs, model.freeze_epochs)")
    ap.add_argument("--workers", type=int, default=1, help="pre-training data workers")
    ap.add_argument("--work", type=Path, default=Path(work), help="phantom data, runs and scores (kept)")
    ap.add_argument("--configs", type=Path, default=CONFIGS, help="folder of the <method>_quick.yaml configs")
    ap.add_argument("--out", type=Path, default=HERE / "results")


def finetune_plan(args) -> dict | None:
    """What ``finetune_scores`` fine-tunes, from ``scoring_arguments``' options (None: nothing)."""
    if not args.finetune_seeds:
        return None
    return {"tasks": args.finetune_tasks, "labels": args.finetune_labels,
            "seeds": list(range(args.finetune_seeds)), "schedule": str(args.finetune_schedule.resolve()),
            "schedule_settings": yaml.safe_load(args.finetune_schedule.read_text())}


def report_header(script: str, argv) -> dict:
    """Where and how a benchmark report was made."""
    return {"machine": machine(), "device": f"CPU, {os.cpu_count()} cores" if not torch.cuda.is_available()
            else torch.cuda.get_device_name(), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(["python", f"benchmarks/{script}", *(argv or sys.argv[1:])])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=registered(), default=registered())
    ap.add_argument("--minutes", type=float, default=10.0, help="pre-training time per method")
    ap.add_argument("--steps", type=int, help="pre-training steps per method instead of --minutes")
    scoring_arguments(ap, labels=[5, 10, 25, ALL], finetune_labels=list(GOAL_LABELS), finetune_seeds=5,
                      finetune_tasks=list(TASKS), work="learning-work")
    args = ap.parse_args(argv)
    configs = args.configs.resolve()
    torch.set_num_threads(cores())
    root = phantom(args.work)
    pretraining = {m: pretrain(m, configs / f"{m}_quick.yaml", root / "store", args.work / "pretrain" / m,
                               args.minutes, args.workers, args.steps) for m in args.methods}
    arch = yaml.safe_load((configs / f"{args.methods[0]}_quick.yaml").read_text())["model"]["arch"]
    seeds = list(range(args.seeds))
    finetune = finetune_plan(args)
    results = evaluate({m: r["backbone"] for m, r in pretraining.items()}, arch, root / "tasks", args.labels,
                       seeds, args.work, finetune)
    if finetune:
        finetune["cpu_minutes"] = sum(r.get("finetune_seconds", 0) for r in results.values()) / 60
    report = {**report_header("learning.py", argv),
              "settings": {"arch": arch, "minutes": args.minutes, "steps": args.steps, "labels": args.labels,
                           "seeds": seeds, "workers": args.workers, "methods": args.methods,
                           "finetune": finetune},
              "pretraining": pretraining, "results": results,
              "comparison": compare(results, args.methods)}
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = args.out / f"learning-{report['machine']}"
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    prefix.with_suffix(".md").write_text(text)
    for path in plots(report, prefix):
        print(f"picture    {path}")
    print(text)
    return 0 if all(c["passed"] for c in report["comparison"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
