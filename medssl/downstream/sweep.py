"""Checkpoints x tasks x training fractions x seeds; one row of results.csv per finished run.

Each run is the fine-tune command (``medssl.downstream.cli``) with the sweep's ``finetune``
arguments, on one task, training fraction, seed and checkpoint. Every input is checked before
the first run; a finished run is appended (and synced) at once, and runs already in results.csv
are skipped, so a killed sweep resumes where it stopped. Rows a kill left incomplete are set
aside and their runs done again. Checkpoints of the run in progress live in a scratch folder
beside results.csv, cleared when the next sweep starts.

A sweep spreads over a cluster as shards (``Shard``, e.g. one per task of a SLURM job array):
shard I of N takes every N-th run of the sweep's fixed order, starting at the I-th, and writes
its own ``results.shard-I-of-N.csv`` with the same resume rule; ``read_sweep`` (and so the
report) reads results.csv and every shard's file as one table, each run once.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from jsonargparse import Namespace
from tqdm.auto import tqdm

from ..checkpoints import CheckpointError, read_backbone
from .cli import finetune_cli, finetune_settings
from .datamodule import TaskDataModule
from .formats import family
from .results import COLUMNS, KEY, append_row, examples_path, read_results, read_sweep, repair, shard_files, writing  # noqa: F401
from .scores import SCORES, SEGMENTATION_SCORES
from .subsets import DEFAULT_FRACTIONS
from .task_data import TaskError

RANDOM = "random"
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


@dataclass
class SweepConfig:
    """``finetune``: arguments of the fine-tune command every run starts from (``--config FILE``,
    ``--model.mode linear``, ``--trainer.max_epochs 30``, ...). The sweep sets the task
    (``data.kind``, ``data.path``), ``data.fraction``, the seed (``data.seed`` and
    ``seed_everything``) and ``model.checkpoint`` of each run."""

    tasks: dict[str, tuple[str, str]]  # name -> (kind, path)
    checkpoints: tuple[str, ...] = (RANDOM,)
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    finetune: tuple[str, ...] = ()

    def run_args(self, task: str, checkpoint: str = RANDOM, fraction: float = 1.0,
                 seed: int = 0) -> list[str]:
        """The fine-tune command's arguments (no subcommand) for one run."""
        kind, path = self.tasks[task]
        return [*QUIET, *self.finetune, "--data.kind", kind, "--data.path", path,
                "--data.fraction", str(fraction), "--data.seed", str(seed), "--seed_everything", str(seed),
                "--model.checkpoint", "null" if checkpoint == RANDOM else checkpoint]

    def settings(self, task: str | None = None) -> Namespace:
        """The fine-tune settings of the runs on ``task`` (default: the first)."""
        return finetune_settings(self.run_args(task or next(iter(self.tasks))))

    @property
    def mode(self) -> str:
        return self.settings().model.mode


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): every ``count``-th run of the sweep's order."""

    index: int
    count: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must lie in 0..{self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        index, _, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError as err:
            raise ValueError(f"{text!r}: expected I/N, shard I (from 0) of N ({err})") from None

    @classmethod
    def from_slurm_array(cls) -> "Shard | None":
        """This task of a SLURM job array (``sbatch --array=0-9``: shards 0..9 of 10), or None."""
        env = os.environ
        if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
            return None
        step = int(env.get("SLURM_ARRAY_TASK_STEP", 1))
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return cls((int(env["SLURM_ARRAY_TASK_ID"]) - first) // step, int(env["SLURM_ARRAY_TASK_COUNT"]))

    def takes(self, position: int) -> bool:
        return position % self.count == self.index

    def path(self, out: Path) -> Path:
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def finished_runs(path: Path) -> set[tuple]:
    """Keys of the complete rows of ``path``, after setting its incomplete rows aside."""
    done = repair(path)
    return run_keys(done)


def run_keys(table: pd.DataFrame) -> set[tuple]:
    """The (task, checkpoint, mode, fraction, seed) of each row of a results table."""
    return {(r.task, str(r.checkpoint), r.mode, float(r.fraction), int(r.seed)) for r in table.itertuples()}


def scratch_folder(out: Path) -> Path:
    """Where the runs of the sweep writing ``out`` keep their checkpoints."""
    return out.with_name(f".{out.name}.scratch")


def check_inputs(config: SweepConfig, out: Path | None = None) -> dict[str, str]:
    """Load every task with the runs' data settings and every checkpoint once (errors name the
    file); {checkpoint: method}. Without ``--model.arch``, every run (random init included) gets
    the checkpoints' architecture, which must then be one.

    The images each task leaves out are listed in ``<results folder>/<task>/skipped_images.csv``.
    """
    for name in config.tasks:
        settings = config.settings(name)
        if family(settings.data.kind) == "segmentation" and settings.model.mode != "finetune":
            raise TaskError(f"{settings.data.path} (task {name}) is a segmentation task: it is fine-tuned "
                             f"(--model.mode finetune), not scored by {settings.model.mode!r}")
        task = TaskDataModule(**settings.data.as_dict()).load()
        if out is not None:
            with writing(out.parent / name):
                task.write_skipped(out.parent / name)
    model = config.settings().model
    methods, archs = {}, {}
    for ckpt in config.checkpoints:
        if ckpt == RANDOM:
            methods[ckpt] = RANDOM
            continue
        report = read_backbone(ckpt, model.arch, model.trust_checkpoint)[1]
        methods[ckpt], archs[ckpt] = report.method or "unknown", report.arch
    if model.arch is None and archs:  # every run, random init included, on the checkpoints' backbone
        if len(set(archs.values())) > 1:
            listing = ", ".join(f"{c}: {a}" for c, a in archs.items())
            raise CheckpointError(f"the checkpoints hold different backbones ({listing}): sweep each "
                                  "backbone on its own, or give --model.arch")
        config.finetune = (*config.finetune, "--model.arch", next(iter(archs.values())))
    return methods


def run_one(config: SweepConfig, task: str, ckpt: str, fraction: float, seed: int, method: str,
            scratch: Path | None = None, examples_to: Path | None = None) -> dict:
    """One run's results row; a segmentation run also keeps its test examples under
    ``examples_to`` (``<task>/predictions/``), if given."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
    start = time.perf_counter()
    try:
        cli = finetune_cli(["fit", *config.run_args(task, ckpt, fraction, seed),
                            "--trainer.default_root_dir", str(folder), "--trainer.logger", "false"],
                           verbose=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = cli.model.test_results
    classes = list(cli.datamodule.load().classes)
    scores = SEGMENTATION_SCORES if cli.datamodule.segmentation else SCORES
    row = {"task": task, "checkpoint": ckpt, "mode": cli.model.hparams.mode, "fraction": fraction,
           "seed": seed, "method": method, "n_train": cli.datamodule.n_train,
           **{name: results[name] for name in scores},
           "epochs": cli.trainer.current_epoch, "wall_s": round(time.perf_counter() - start, 2),
           "confusion": json.dumps(results["confusion"]),
           "classes": json.dumps(classes)}  # the confusion rows' names
    if cli.datamodule.segmentation:
        row["n_test"] = results["n_test"]
        row["class_scores"] = json.dumps(dict(zip(classes[1:], results["class_dice"])))
        if examples_to is not None and cli.model.examples:
            save_examples(examples_to, task, ckpt, fraction, seed, method, cli.model.examples, classes)
    return row


def save_examples(folder: Path, task: str, ckpt: str, fraction: float, seed: int, method: str,
                  examples: dict, classes: list[str]) -> Path:
    """A run's test slices with truth and prediction, for the report's picture."""
    path = examples_path(folder / task / "predictions", ckpt, fraction, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        np.savez_compressed(path, method=method, checkpoint=ckpt, fraction=fraction, seed=seed,
                            classes=np.asarray(classes), **examples)
    return path


@contextmanager
def once_per_sweep(shown: set[str], first: bool):
    """What every run would say alike (Lightning's device lines and tips, a task's skipped files),
    said by the sweep's first run only: later runs keep Lightning's info lines to themselves and
    show only warnings not shown before."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    if not first:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for warning in caught:
            if str(warning.message) not in shown:
                shown.add(str(warning.message))
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def all_runs(config: SweepConfig) -> list[tuple[str, str, float, int]]:
    """Every run of the sweep, in its fixed order (what shards split)."""
    return [(t, c, float(f), int(s)) for t in config.tasks for c in config.checkpoints
            for f in config.fractions for s in config.seeds]


def finished_elsewhere(out: Path, own: Path) -> set[tuple]:
    """Runs finished in the sweep's other files (results.csv, other shards'), read as they are."""
    done = set()
    for path in [out, *shard_files(out)]:
        if path != own and path.is_file():
            done |= run_keys(read_results(path))
    return done


def run_sweep(config: SweepConfig, out: str | Path, progress: bool = True, shard: Shard | None = None) -> pd.DataFrame:
    """Run what is left of the sweep (of ``shard``'s share, into its own file, if given); the
    whole sweep's finished runs as one table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    own = shard.path(out) if shard else out
    methods = check_inputs(config, out)
    done = finished_runs(own) | finished_elsewhere(out, own)
    scratch = scratch_folder(own)
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed run of this file left
    mode = config.mode
    plan = [(t, c, f, s) for i, (t, c, f, s) in enumerate(all_runs(config))
            if (shard is None or shard.takes(i)) and (t, c, mode, f, s) not in done]
    label = f"sweep shard {shard}" if shard else "sweep"
    shown: set[str] = set()
    for number, (task, ckpt, fraction, seed) in enumerate(tqdm(plan, desc=label, unit="run", disable=not progress)):
        with once_per_sweep(shown, first=number == 0):
            row = run_one(config, task, ckpt, fraction, seed, methods[ckpt], scratch, out.parent)
        append_row(own, row)
    shutil.rmtree(scratch, ignore_errors=True)
    return read_sweep(out)
