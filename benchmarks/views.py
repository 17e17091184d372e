"""Which views keep CT anatomy? The views ablation.

Each method pre-trains on the phantom slice store with its quick config changed in one respect at a
time (VARIANTS: no flips, no rotation, the full HU range or one fixed window instead of random
windows, larger crops, centred crops, and all the CT-aware choices together), for the same budget,
and each backbone is scored as in the learning benchmark (``python -m benchmarks.learning``): on
the organ task with 5 and 10 labels per class, by fine-tuning (the study's protocol, the short
schedule), the kNN vote and the linear probe, paired with random init; and, so that a choice rests
on more than one task, by the kNN vote and the linear probe on the COVID and brain phantoms. It
also counts laterality errors: organ test images of a left or right organ that the linear probe
puts in the mirror class (lung-left as lung-right, ...), since a flipped slice shows the other
side's anatomy.

    python -m benchmarks.views --methods simclr spark --steps 500
    python -m benchmarks.views --methods simclr --variants as-is no-flips --steps 200 --work /tmp/views

Variants are compared at the same number of steps (``--steps``, default 500): a time budget
(``--minutes``) gives a variant fewer steps whenever something else shares the cores.

Resumable like the learning benchmark (runs and scores kept in ``--work``). Written:
benchmarks/results/views-<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks import common
from benchmarks.learning import FINETUNE, GOAL_LABELS, PROBES, PROTOCOLS, TASKS
from benchmarks.learning.cache import safe_name
from benchmarks.learning.comparison import compare, row_of
from benchmarks.learning.options import finetune_plan, parse, scoring_arguments
from benchmarks.learning.pretraining import phantom, phantom_tasks, pretrain
from benchmarks.learning.probes import features, input_of
from benchmarks.learning.scoring import evaluate
from medssl.files import atomic_write_bytes

MIRRORS = (("kidney-left", "kidney-right"), ("lung-left", "lung-right"))


def no_flips(config: dict) -> None:
    for view in config["data"]["views"]:
        view.update(hflip_p=0.0, vflip_p=0.0)


def no_rotation(config: dict) -> None:
    for view in config["data"]["views"]:
        view["rotate_p"] = 0.0


def full_range(config: dict) -> None:
    config["data"]["intensity"] = {"mode": "full"}


def fixed_window(config: dict) -> None:
    """The one window a DICOM input gets downstream: the middle of the random windows' ranges."""
    from medssl.data.input_mapping import InputMapping

    fixed = InputMapping.of_pretraining(config["data"]["intensity"], None).hu_intensity()
    config["data"]["intensity"] = {"mode": "window", "level": fixed.level, "width": fixed.width}


def large_crops(config: dict) -> None:
    view = config["data"]["views"][0]  # the global views; multi-crop's local ones stay
    view["scale"] = [max(0.6, view.get("scale", [0.6, 1.0])[0]), 1.0]


def centred_crops(config: dict) -> None:
    config["data"]["views"][0]["crop_position"] = "centre"  # the global views; multi-crop's local ones stay


def ct_aware(config: dict) -> None:
    no_flips(config)
    no_rotation(config)


VARIANTS = {  # name: (change to the quick config, what it tests)
    "as-is": (None, "the quick config"),
    "no-flips": (no_flips, "no horizontal or vertical flips"),
    "no-rotation": (no_rotation, "no rotation"),
    "full-range": (full_range, "the full HU range (-1024..3071) instead of random windows"),
    "fixed-window": (fixed_window,
                     "one fixed window, the middle of the random ones (DICOM inputs get it downstream)"),
    "large-crops": (large_crops, "crops of at least 60 % of the slice"),
    "centred-crops": (centred_crops, "crops centred on the slice (their size drawn, not their position)"),
    "ct-aware": (ct_aware, "no flips and no rotation"),
}


def variant_config(method: str, variant: str, configs: Path | None, folder: Path) -> Path:
    """The method's quick config (in ``configs``, None: the registry's) with ``variant``'s change,
    written to ``folder``."""
    config = yaml.safe_load(common.quick_config(method, configs).read_text())
    change = VARIANTS[variant][0]
    if change is not None:
        change(config)
    path = folder / f"{method}-{variant}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def effective(config: Path) -> str:
    """A config as it acts: its views with every default filled in (no ``rotate_p`` is 0)."""
    from medssl.pretrain.views import ViewSpec

    settings = yaml.safe_load(config.read_text())
    settings["data"]["views"] = [ViewSpec.of(v).as_dict() for v in settings["data"]["views"]]
    return json.dumps(settings, sort_keys=True)


def distinct_variants(method: str, variants, configs: Path | None, folder: Path) -> tuple[dict, dict]:
    """The variants worth a run, {variant: config path}, and those whose change leaves the config
    acting as an earlier one (no rotation for views that do not rotate), {run name: the earlier}."""
    runs, same_as, seen = {}, {}, {}
    for variant in variants:
        config = variant_config(method, variant, configs, folder)
        earlier = seen.setdefault(effective(config), variant)
        if earlier == variant:
            runs[variant] = config
        else:
            same_as[f"{method}-{variant}"] = f"{method}-{earlier}"
    return runs, same_as


def laterality_errors(checkpoint: str | None, arch: str, tasks_dir: Path, per_class: int, seeds,
                      mapping) -> dict:
    """Mirror-class errors of the linear probe on the organ task, ``per_class`` labels per class:
    {"errors": {pair: [count per seed]}, "tested": test images of those classes}. Random init
    (no checkpoint) draws its weights once per seed, as in the learning benchmark."""
    from medssl.downstream.linear_probe import LinearProbe
    from medssl.downstream.subsets import per_class_subsets
    from medssl.downstream.tasks import load_task

    kind, path = TASKS["organ"]
    task = load_task(kind, tasks_dir / path, progress=False)
    index = {name: i for i, name in enumerate(task.classes)}
    pairs = [(index[a], index[b], f"{a} / {b}") for a, b in MIRRORS if a in index and b in index]
    out = {name: [] for _, _, name in pairs}
    feats = features(checkpoint, arch, task, mapping) if checkpoint else None
    for seed in seeds:
        f = feats or features(None, arch, task, mapping, init_seed=seed)
        (xtr, ytr), val, (xte, yte) = f["train"], f["val"], f["test"]
        pick = per_class_subsets(ytr, [per_class], seed)[per_class]
        probe = LinearProbe(torch.from_numpy(xtr[pick]), torch.from_numpy(ytr[pick]), len(task.classes),
                            val=(torch.from_numpy(val[0]), torch.from_numpy(val[1])))
        predicted = probe.predict(torch.from_numpy(xte)).numpy()
        for a, b, name in pairs:
            out[name].append(int((((yte == a) & (predicted == b)) | ((yte == b) & (predicted == a))).sum()))
    yte = task.splits["test"].labels
    return {"errors": out, "tested": int(sum(((yte == a) | (yte == b)).sum() for a, b, _ in pairs))}


def views_picture(method: str, runs: dict[str, Path], store: Path, path: Path) -> Path:
    """One slice of the store and each variant's views of it, drawn with the same seed."""
    from medssl.data.store import SliceStore
    from medssl.pretrain.view_pictures import save_views_picture

    slices = SliceStore(store)
    first = slices.manifest.patient_id == slices.manifest.patient_id.iloc[0]
    middle = int(np.flatnonzero(first.to_numpy())[int(first.sum()) // 2])
    rows = {variant: yaml.safe_load(config.read_text())["data"] for variant, config in runs.items()}
    return save_views_picture(slices[middle], rows, path, title=f"{method}: the views of each variant, same seed")


def kept(path: Path, compute) -> dict:
    """``compute()``, kept in ``path`` (JSON) for the next run."""
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(value).encode())
    return value


def total_errors(laterality: dict) -> float:
    """Mean over seeds of the mirror errors of every pair."""
    return float(np.sum(list(laterality["errors"].values()), axis=0).mean())


def markdown(report: dict) -> str:
    s = report["settings"]
    ft = s["finetune"] or {}
    budget = f"{s['minutes']:g} min" if s["minutes"] else f"{s['steps']} steps"
    lines = [f"# Views ablation on {report['machine']}", "",
             *common.command_lines(report), f"- {report['device']}; torch {report['torch']}; {report['date']}",
             f"- pre-training: each method's quick config with one change, "
             f"{budget} each on the phantom "
             f"store; scored on the organ task with {' and '.join(map(str, s['labels']))} labels per class: "
             f"fine-tuning ({len(ft.get('seeds', []))} seeds, schedule {ft.get('schedule_settings')}), kNN and "
             "linear probe "
             f"({s['seeds']} seeds); laterality: left/right organ test images the linear probe puts in the mirror "
             f"class, with {s['labels'][0]} labels per class", "",
             "| method | variant | steps | " + " | ".join(
                 f"{p} {n}/class" for p in PROTOCOLS for n in s["labels"]) + " | laterality errors |",
             "|---|---|---:|" + "---|" * (len(PROTOCOLS) * len(s["labels"]) + 1)]
    for name, entry in report["entries"].items():
        cells = []
        for p in PROTOCOLS:
            for n in s["labels"]:
                cells.append(difference(entry["comparison"], "organ", p, n))
        cells.append(f"{total_errors(entry['laterality']):.1f} of {entry['laterality']['tested']}")
        lines.append(f"| {entry['method']} | {entry['variant']} | {entry['steps']} | " + " | ".join(cells) + " |")
    lines += other_tasks(report)
    lines += choices(report)
    random_lat = report.get("random_laterality")
    if random_lat:
        lines += ["", "Random init's laterality errors: " + "; ".join(
            f"{key}: {total_errors(v):.1f} of {v['tested']}" for key, v in random_lat.items())]
    if report.get("same_as"):
        lines += ["", "Not run, their change leaving the quick config as it was: " + "; ".join(
            f"{name} (the same as {earlier})" for name, earlier in report["same_as"].items())]
    lines += ["", "Differences to random init in accuracy, 95 % interval paired by seed. Each method's views, "
              f"variant by variant: `views-{report['machine']}-<method>.png`. Variants:", ""]
    lines += [f"- `{name}`: {what}" for name, (_, what) in VARIANTS.items() if name in s["variants"]]
    return "\n".join(lines) + "\n"


ANATOMY_CHANGES = ("no-flips", "no-rotation", "ct-aware")  # drop views a CT never shows, unless they help


def frozen_score(entry: dict, task: str, labels) -> float | None:
    """The mean of the kNN and linear-probe differences to random init on ``task`` over ``labels``."""
    rows = [row_of(entry["comparison"], task, p, n) for p in PROBES for n in labels]
    return None if any(r is None for r in rows) else float(np.mean([r["difference"] for r in rows]))


def finetune_gain(entry: dict, labels) -> float | None:
    """The organ task's fine-tuning difference to random init, the fewest labels fine-tuned."""
    rows = [row_of(entry["comparison"], "organ", FINETUNE, n) for n in sorted(labels)]
    rows = [r for r in rows if r is not None]
    return rows[0]["difference"] if rows else None


def choice(variant: str, as_is: dict, entry: dict, labels, finetune_labels) -> dict:
    """The rule that picks the CT-aware defaults (docs/protocol.md), for one variant against the
    quick config as it is: a change that drops flips or rotation is made unless the variant is
    worse by its frozen score on at least 2 of the 3 tasks and worse by fine-tuning; any other
    change only if it is better on at least 2 of the 3 tasks and not worse by fine-tuning."""
    deltas = {}
    for task in TASKS:
        mine, theirs = frozen_score(entry, task, labels), frozen_score(as_is, task, labels)
        if mine is not None and theirs is not None:
            deltas[task] = mine - theirs
    ft_mine, ft_theirs = finetune_gain(entry, finetune_labels), finetune_gain(as_is, finetune_labels)
    ft_delta = None if ft_mine is None or ft_theirs is None else ft_mine - ft_theirs
    better = sum(d > 0 for d in deltas.values())
    worse = sum(d < 0 for d in deltas.values())
    if len(deltas) < len(TASKS) or ft_delta is None:
        verdict = "not decided: a task or fine-tuning is missing"
    elif variant in ANATOMY_CHANGES:
        verdict = "keep the quick config" if worse >= 2 and ft_delta < 0 else "change"
    else:
        verdict = "change" if better >= 2 and ft_delta >= 0 else "keep the quick config"
    return {"frozen": deltas, "finetune": ft_delta, "verdict": verdict}


def choices(report: dict) -> list[str]:
    """Each variant's verdict by the rule, per method, with the figures it rests on."""
    s = report["settings"]
    ft_labels = (s["finetune"] or {}).get("labels", [])
    by_method = {}
    for entry in report["entries"].values():
        by_method.setdefault(entry["method"], {})[entry["variant"]] = entry
    lines = []
    for method, entries in by_method.items():
        if "as-is" not in entries:
            continue
        for variant, entry in entries.items():
            if variant == "as-is":
                continue
            c = choice(variant, entries["as-is"], entry, s["labels"], ft_labels)
            frozen = ", ".join(f"{t} {d:+.3f}" for t, d in c["frozen"].items())
            ft = "" if c["finetune"] is None else f"{c['finetune']:+.3f}"
            lines.append(f"| {method} | {variant} | {frozen} | {ft} | {c['verdict']} |")
    if not lines:
        return []
    return ["", "The rule that chooses the defaults (docs/protocol.md), each variant against the quick config as "
            "it is: its frozen score (mean of kNN and linear-probe differences) minus the quick config's, per "
            "task, and the same for the organ task's fine-tuning:", "",
            "| method | variant | frozen score, minus the quick config's | fine-tuning, minus | verdict |",
            "|---|---|---|---|---|", *lines]


def difference(comparison: dict, task: str, probe: str, n: int) -> str:
    r = row_of(comparison, task, probe, n)
    return "" if r is None else f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"


def other_tasks(report: dict) -> list[str]:
    """A second table: the same backbones' frozen features on the other phantom tasks, so that a
    choice of views rests on more than the organ task."""
    labels = report["settings"]["labels"]
    others = [t for t in TASKS if t != "organ" and any(
        row_of(e["comparison"], t, p, n) for e in report["entries"].values() for p in PROBES for n in labels)]
    if not others:
        return []
    columns = [(t, p, n) for t in others for p in PROBES for n in labels]
    lines = ["", "The same backbones' frozen features on the other phantom tasks (difference to random init):", "",
             "| method | variant | " + " | ".join(f"{t} {p} {n}/class" for t, p, n in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for entry in report["entries"].values():
        lines.append(f"| {entry['method']} | {entry['variant']} | "
                     + " | ".join(difference(entry["comparison"], *c) for c in columns) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=common.methods(), default=["simclr", "spark"])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=500, help="pre-training steps per method and variant: the same "
                    "for every variant, whatever else shares the machine")
    ap.add_argument("--minutes", type=float, help="pre-training time per method and variant instead of --steps")
    scoring_arguments(ap, labels=list(GOAL_LABELS), finetune_labels=list(GOAL_LABELS), finetune_seeds=5,
                      finetune_tasks=["organ"], work="views-work")
    args = parse(ap, argv)
    torch.set_num_threads(common.cores())
    seeds = list(range(args.seeds))
    plan = finetune_plan(args)
    settings = {"minutes": args.minutes, "steps": args.steps, "labels": args.labels, "seeds": args.seeds,
                "finetune": plan, "variants": args.variants, "methods": args.methods,
                "phantom": phantom_tasks(args.work)}
    earlier = common.earlier_report(args.add_to, "views", settings)
    root = phantom(args.work)
    entries, random_lat, same_as = {}, {}, {}
    for method in args.methods:
        runs, same = distinct_variants(method, args.variants, args.configs, args.work / "configs")
        same_as.update(same)
        for name, first in same.items():
            print(f"  {name}: the same config as {first}, not run again", flush=True)
        picture = views_picture(method, runs, root / "store", args.out / f"views-{common.machine()}-{method}.png")
        print(f"  {method}'s views, variant by variant: {picture}", flush=True)
        for variant, config in runs.items():
            name = f"{method}-{variant}"
            pre = pretrain(method, config, root / "store", args.work / "pretrain" / name, args.minutes,
                           args.workers, None if args.minutes else args.steps)
            arch = yaml.safe_load(config.read_text())["model"]["arch"]
            results = evaluate({name: pre["backbone"]}, arch, root / "tasks", args.labels, seeds, args.work, plan)
            baseline = results[name]["baseline"]
            mapping = input_of(pre["backbone"])
            scores = args.work / "scores"
            entries[name] = {"method": method, "variant": variant, "steps": pre["steps"], "baseline": baseline,
                             "comparison": compare(results, [name])[name],
                             "laterality": kept(scores / f"laterality-{safe_name(name)}.json", lambda: (
                                 laterality_errors(pre["backbone"], arch, root / "tasks", args.labels[0], seeds,
                                                   mapping)))}
            if baseline not in random_lat:
                random_lat[baseline] = kept(scores / f"laterality-{safe_name(baseline)}.json", lambda: (
                    laterality_errors(None, arch, root / "tasks", args.labels[0], seeds, mapping)))
    report = common.add_to(earlier, {**common.header("views", argv), "settings": settings, "entries": entries,
                                     "random_laterality": random_lat, "same_as": same_as},
                           ("entries", "random_laterality", "same_as"))
    common.write(args.out, f"views-{report['machine']}", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
