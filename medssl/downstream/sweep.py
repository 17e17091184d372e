"""Checkpoints x tasks x training fractions x seeds; one row of results.csv per finished run.

Every input is checked before the first run; a finished run is appended (and synced) at once,
and runs already in results.csv are skipped, so a killed sweep resumes where it stopped. Rows a
kill left incomplete are set aside and their runs done again. Checkpoints of the run in progress
live in a scratch folder beside results.csv, cleared when the next sweep starts.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from tqdm.auto import tqdm

from ..checkpoints import read_backbone
from .finetune import FineTune, TaskDataModule
from .results import COLUMNS, KEY, append_row, read_results, repair, writing  # noqa: F401
from .subsets import DEFAULT_FRACTIONS
from .tasks import load_task

RANDOM = "random"


@dataclass
class SweepConfig:
    tasks: dict[str, tuple[str, str]]  # name -> (kind, path)
    checkpoints: list[str] = field(default_factory=lambda: [RANDOM])
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    mode: str = "finetune"
    arch: str = "resnet50"
    image_size: int = 224
    batch_size: int = 64
    max_epochs: int = 70
    freeze_epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 5e-4
    backbone_lr: float = 1e-4
    min_per_class: int = 2
    num_workers: int = 4
    accelerator: str = "auto"
    precision: str = "32-true"


def finished_runs(path: Path) -> set[tuple]:
    """Keys of the complete rows of ``path``, after setting its incomplete rows aside."""
    done = repair(path)
    return {(r.task, str(r.checkpoint), r.mode, float(r.fraction), int(r.seed))
            for r in done.itertuples()}


def scratch_folder(out: Path) -> Path:
    """Where the runs of the sweep writing ``out`` keep their checkpoints."""
    return out.with_name(f".{out.name}.scratch")


def check_inputs(config: SweepConfig, out: Path | None = None) -> dict[str, str]:
    """Load every task and checkpoint once (errors name the file); {checkpoint: method}.

    The images each task leaves out are listed in ``<results folder>/<task>/skipped_images.csv``.
    """
    for name, (kind, path) in config.tasks.items():
        task = load_task(kind, path)
        if out is not None:
            with writing(out.parent / name):
                task.write_skipped(out.parent / name)
    methods = {}
    for ckpt in config.checkpoints:
        methods[ckpt] = RANDOM if ckpt == RANDOM else (read_backbone(ckpt, config.arch)[1].method or "unknown")
    return methods


def run_one(config: SweepConfig, task: str, ckpt: str, fraction: float, seed: int, method: str,
            scratch: Path | None = None) -> dict:
    kind, path = config.tasks[task]
    pl.seed_everything(seed, workers=True)
    data = TaskDataModule(kind, path, image_size=config.image_size, batch_size=config.batch_size,
                          fraction=fraction, seed=seed, min_per_class=config.min_per_class,
                          num_workers=config.num_workers)
    model = FineTune(data.num_classes, None if ckpt == RANDOM else ckpt, config.arch, config.mode,
                     config.lr, config.weight_decay, config.freeze_epochs, config.backbone_lr)
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    start = time.perf_counter()
    try:
        best = ModelCheckpoint(dirpath=folder, monitor="val/accuracy", mode="max", save_top_k=1)
        epochs = 1 if config.mode == "knn" else config.max_epochs  # one pass builds the kNN bank
        trainer = pl.Trainer(max_epochs=epochs, accelerator=config.accelerator, devices=1,
                             precision=config.precision, logger=False, callbacks=[best],
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        with writing(folder):
            trainer.fit(model, data)
            trainer.test(model, data, ckpt_path="best", verbose=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = model.test_results
    return {"task": task, "checkpoint": ckpt, "mode": config.mode, "fraction": fraction,
            "seed": seed, "method": method, "n_train": len(data.train_indices),
            **{k: results[k] for k in ("accuracy", "balanced_accuracy", "auc", "f1_macro",
                                       "precision", "recall")},
            "epochs": trainer.current_epoch, "wall_s": round(time.perf_counter() - start, 2),
            "confusion": json.dumps(results["confusion"])}


def run_sweep(config: SweepConfig, out: str | Path, progress: bool = True) -> pd.DataFrame:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    methods = check_inputs(config, out)
    done = finished_runs(out)
    scratch = scratch_folder(out)
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed sweep left
    plan = [(t, c, float(f), int(s)) for t in config.tasks for c in config.checkpoints
            for f in config.fractions for s in config.seeds
            if (t, c, config.mode, float(f), int(s)) not in done]
    for task, ckpt, fraction, seed in tqdm(plan, desc="sweep", unit="run", disable=not progress):
        append_row(out, run_one(config, task, ckpt, fraction, seed, methods[ckpt], scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    return read_results(out)
