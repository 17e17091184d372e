"""Pre-training for the learning benchmarks: the phantom data, and one run of the pre-training
command per method, resumed when cut short and re-used when done."""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT
from benchmarks.learning import SEGMENTATION_TASK
from medssl.files import atomic_write_bytes

PHANTOM_SEED = 0  # the seed of the benchmarks' phantom store and tasks


def phantom(work: Path) -> Path:
    """The phantom store and tasks under ``work/phantom`` (made once)."""
    from medssl.data.phantom import write_phantom_store
    from medssl.downstream.phantom_tasks import write_phantom_tasks, write_segmentation_task

    root = work / "phantom"
    if not (root / "store" / "store.json").exists():
        write_phantom_store(root / "store", patients=40, slices_per_patient=32, size=64, seed=PHANTOM_SEED,
                            overwrite=True)
    if not (root / "tasks" / "tasks.json").exists():
        write_phantom_tasks(root / "tasks", seed=PHANTOM_SEED, overwrite=True)
    elif not (root / "tasks" / SEGMENTATION_TASK[1]).exists():  # a phantom set from before the segmentation task
        write_segmentation_task(root / "tasks" / SEGMENTATION_TASK[1], seed=PHANTOM_SEED)
    return root


def phantom_tasks(work: Path) -> dict:
    """The phantom tasks the benchmark scores on in ``work``: their ``tasks.json``, or what
    ``phantom`` writes there. A report keeps it in its settings, so that figures scored on other
    tasks (another version's test sets, say) are never joined into one report. Tasks other than
    this version's are named on the console."""
    from medssl.downstream.phantom_tasks import tasks_description

    tasks_file, wanted = work / "phantom" / "tasks" / "tasks.json", tasks_description(seed=PHANTOM_SEED)
    if not tasks_file.exists():
        return wanted
    found = json.loads(tasks_file.read_text())
    if found != wanted:
        there, now = flat(found), flat(wanted)
        differ = "; ".join(f"{k} {there.get(k)} there, {v} now" for k, v in now.items() if there.get(k) != v)
        print(f"  {tasks_file}: phantom tasks other than this version writes ({differ})", flush=True)
    return found


def flat(description: dict) -> dict:
    """A phantom tasks' description with its counts among its other settings."""
    return {**{k: v for k, v in description.items() if k != "counts"}, **description.get("counts", {})}


def max_time(minutes: float) -> str:
    """``--trainer.max_time``'s DD:HH:MM:SS."""
    seconds = int(round(minutes * 60))
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def pretrain(method: str, config: Path, store: Path, run_dir: Path, minutes: float, workers: int,
             steps: int | None = None, extra: tuple[str, ...] = ()) -> dict:
    """Pre-train ``method`` with ``config`` for ``minutes`` or ``steps`` (resuming a run cut
    short), ``extra``: more arguments of the pre-training command; its backbone and figures. A
    run folder begun with another config, budget or arguments is refused, not re-used."""
    backbone = run_dir / f"{method}_backbone.pt"
    done, settings_file = run_dir / "benchmark-done.json", run_dir / "benchmark-settings.json"
    settings = {"config_sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
                "budget": {"steps": steps} if steps else {"minutes": minutes}, "extra": list(extra)}
    earlier = json.loads(settings_file.read_text()) if settings_file.exists() else None
    if earlier is not None and earlier != settings:
        raise RuntimeError(f"{run_dir}: pre-trained with other settings ({different(earlier, settings)}); "
                           "give another --work, or delete that folder to pre-train again")
    if done.exists():
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(settings_file, json.dumps(settings).encode())
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
    with open(log, "a") as out:
        status = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0 or not backbone.exists():
        raise RuntimeError(f"pre-training {method} failed (exit {status}); see {log}")
    meta = torch.load(backbone, map_location="cpu", weights_only=True)
    record = {"backbone": str(backbone), "steps": meta["steps"], "epochs": meta["epochs"],
              "seconds": round(time.perf_counter() - start, 1), "loss": loss_curve(run_dir)}
    atomic_write_bytes(done, json.dumps(record).encode())
    return record


def different(earlier: dict, now: dict) -> str:
    """What changed between two runs' settings, in words."""
    words = {"config_sha256": "the config file's contents", "budget": "the budget", "extra": "the extra arguments"}
    return "; ".join(f"{words[key]}: {earlier.get(key)} then, {now[key]} now" if key == "budget" else words[key]
                     for key in now if earlier.get(key) != now[key])


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
