"""Pre-training runs that survive a kill, a time limit or a requeue.

A run lives in one directory (``trainer.default_root_dir``); running the same command again
finds it and goes on from its newest intact checkpoint. Checkpoints are written atomically
(a temporary file in the same folder, then a rename), every ``every_n_steps`` optimizer steps
and every ``every_n_epochs`` epochs, and the newest ``keep`` are kept. On SLURM, the requeue
signal (``#SBATCH --signal=SIGUSR1@90``) asks for a checkpoint at the next step boundary, then
``scontrol requeue <job>``, then a clean stop; the requeued job runs the same command.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from . import cluster

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
STEP_FILE = re.compile(r"^epoch=(\d+)-step=(\d+)\.ckpt$")


class ResumeError(RuntimeError):
    """No usable checkpoint where one was expected."""


def step_seed(*keys: int) -> int:
    """One 63-bit seed from integers (run seed, rank, epoch, batch): numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(k) % 2**63 for k in keys]).generate_state(1, np.uint64)[0]
               % 2**63)


STOPPED: dict = {}  # how this process's run was stopped by a signal, for the exit status and message
STEP_STREAM, VIEW_STREAM = 1, 2  # the step's draws and the device views', from the same key


def run_seed() -> int:
    """The seed the run was started with (Lightning's ``seed_everything``), 0 if none."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<name>.partial`` beside the target, flushes it to disk, then renames it over the
    target: a kill during the write leaves the previous file whole (Lightning's default goes
    through a temporary file in /tmp, which is a copy, not a rename, across file systems)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with a checkpoint file, or None if it reads back whole (every member of
    torch's zip archive present with a matching CRC)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f"damaged record {bad!r} (CRC mismatch)"
    except zipfile.BadZipFile as err:
        return f"not a whole checkpoint ({err}): truncated or overwritten"
    except OSError as err:
        return f"unreadable ({err})"
    return None


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's step checkpoints, newest (highest step) first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob("*.ckpt") if folder.is_dir() else []:
        match = STEP_FILE.match(path.name)
        if match:
            found.append((int(match.group(2)), int(match.group(1)), path))
    return [path for *_, path in sorted(found, reverse=True)]


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint of the run in ``run_dir`` (None for a new run). Damaged
    ones are named and skipped; if every one is damaged, ``ResumeError`` says so."""
    candidates = run_checkpoints(run_dir)
    damaged = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            for name, why in damaged:
                rank_zero_warn(f"{name}: {why}; resuming from the previous checkpoint {path.name}")
            return path
        damaged.append((path, problem))
    if damaged:
        listing = "; ".join(f"{path}: {why}" for path, why in damaged)
        raise ResumeError(f"every checkpoint of the run in {run_dir} is damaged ({listing}). Move them "
                          "away to start this run again from step 0, or pass --ckpt_path FILE.")
    return None


class RunCheckpoints(Checkpoint):
    """The run's checkpoints: ``<run>/checkpoints/epoch=E-step=S.ckpt``, written every
    ``every_n_steps`` optimizer steps (0: never), at the end of every ``every_n_epochs``-th
    epoch (0: never) and at the end of training; the newest ``keep`` are kept, and
    ``last.ckpt`` is a hard link to the newest (for ``medssl export``).

    ``requeue_signal``: on SLURM, this signal (SIGUSR1 by default; ``#SBATCH --signal``) asks for
    a checkpoint at the next step boundary, then ``scontrol requeue $SLURM_JOB_ID`` and a clean
    stop. Under DDP the ranks agree on it every ``signal_check_every`` steps (one small
    all-reduce), so that no step waits on the others just to look.
    """

    def __init__(self, every_n_steps: int = 1000, every_n_epochs: int = 1, keep: int = 2,
                 requeue_signal: str | None = "SIGUSR1", signal_check_every: int = 10):
        if every_n_steps < 0 or every_n_epochs < 0 or keep < 1:
            raise ValueError("every_n_steps and every_n_epochs must be >= 0, keep >= 1")
        self.every_n_steps, self.every_n_epochs, self.keep = every_n_steps, every_n_epochs, keep
        self.requeue_signal = requeue_signal
        self.signal_check_every = max(1, signal_check_every)
        self.signalled = False
        self.last_saved_step = -1
        self.last_model_path = ""
        self.saved: list[Path] = []
        self._previous_handler = None
        self.requeued = False
        self._expected: bool | None = None

    @staticmethod
    def resume_path(run_dir: Path) -> Path:
        """The file a resumed run loads: ``last.ckpt``, pointed by rank 0 at the newest intact one."""
        return Path(run_dir) / CHECKPOINT_DIR / LAST

    def expect_resume(self, resuming: bool) -> None:
        """What this rank's listing of the run's folder said (the command line set no checkpoint)."""
        self._expected = resuming

    def folder(self, trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir) / CHECKPOINT_DIR

    # --- when -----------------------------------------------------------------------------------
    def on_train_start(self, trainer, module) -> None:
        steps, epochs = trainer.max_steps, trainer.max_epochs
        if steps > 0 and epochs is not None and epochs > 0:
            ends = trainer.estimated_stepping_batches  # the first of the two limits
            if ends < steps:
                rank_zero_warn(f"max_epochs {epochs} ends this run at step {int(ends)}, before max_steps "
                               f"{steps}: give --trainer.max_epochs -1 to train {steps} steps.")
        total = trainer.estimated_stepping_batches
        every = trainer.log_every_n_steps
        if total != float("inf") and 1 < total < 2 * every:  # a short run would log its loss once or never
            rank_zero_warn(f"this run has {int(total)} steps and logs its loss every {every}: "
                           f"{int(total) // every} points in TensorBoard; give --trainer.log_every_n_steps "
                           f"{max(1, int(total) // 10)} to see it fall.")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self._requeue_requested(trainer, step):
            self.save(trainer)
            self._requeue(trainer)
            return
        if self.every_n_steps and step % self.every_n_steps == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer)

    def on_train_end(self, trainer, module) -> None:
        self.save(trainer)

    def on_exception(self, trainer, module, exception) -> None:
        """SIGTERM (a scheduler's stop): Lightning stops at the next step boundary, where a
        checkpoint is whole; Ctrl-C may land inside a step, so the newest checkpoint stays."""
        if isinstance(exception, SIGTERMException):
            self.save(trainer)
            STOPPED.update(signal="SIGTERM", step=trainer.global_step)
        elif isinstance(exception, KeyboardInterrupt):
            STOPPED.update(signal="SIGINT", step=trainer.global_step)
        else:
            return
        newest = run_checkpoints(trainer.default_root_dir)
        STOPPED["checkpoint"] = newest[0].name if newest else None

    # --- how ------------------------------------------------------------------------------------
    def save(self, trainer: pl.Trainer) -> Path | None:
        """A checkpoint at the current step (once per step), then the old ones pruned."""
        step = trainer.global_step
        if step == self.last_saved_step or trainer.sanity_checking or step == 0:
            return None
        path = self.folder(trainer) / f"epoch={trainer.current_epoch}-step={step}.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # every rank takes part; rank 0 writes
        self.last_saved_step = step
        self.last_model_path = str(self.folder(trainer) / LAST)
        if trainer.is_global_zero:
            self._link_last(path)
            for old in run_checkpoints(trainer.default_root_dir)[self.keep:]:
                old.unlink(missing_ok=True)
        trainer.strategy.barrier("RunCheckpoints.save")
        return path

    @staticmethod
    def _link_last(path: Path) -> None:
        last = path.with_name(LAST)
        staging = path.with_name(LAST + ".partial")
        staging.unlink(missing_ok=True)
        try:
            os.link(path, staging)
        except OSError:  # a file system without hard links: a copy, renamed into place
            import shutil

            shutil.copyfile(path, staging)
        os.replace(staging, last)

    def state_dict(self) -> dict:
        return {"last_saved_step": self.last_saved_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_saved_step = state_dict.get("last_saved_step", -1)

    # --- resume: rank 0 chooses ----------------------------------------------------------------
    def setup(self, trainer, module, stage) -> None:
        if stage != "fit":
            return
        if self._expected is not None:
            self._agree_on_resume(trainer)
        self._arm_requeue()

    def _agree_on_resume(self, trainer: pl.Trainer) -> None:
        """Rank 0 checks the candidates (the only rank that reads them whole), points
        ``last.ckpt`` at the newest intact one, and tells the others; a rank whose own listing
        disagrees stops with the reason rather than train from other weights."""
        root = Path(trainer.default_root_dir)
        decision = None
        if trainer.is_global_zero:
            try:
                chosen = find_resume_checkpoint(root)
                if chosen is not None:
                    last = self.resume_path(root)
                    if not (last.exists() and os.path.samefile(last, chosen)):
                        self._link_last(chosen)
                decision = {"path": chosen.name if chosen else None, "error": None}
            except ResumeError as err:
                decision = {"path": None, "error": str(err)}
        decision = trainer.strategy.broadcast(decision, src=0)
        if decision["error"]:
            raise ResumeError(decision["error"])
        if (decision["path"] is not None) != self._expected:
            mine = "sees checkpoints" if self._expected else "sees no checkpoint"
            theirs = f"resumes from {decision['path']}" if decision["path"] else "starts a new run"
            raise ResumeError(f"rank {trainer.global_rank} {mine} in {root / CHECKPOINT_DIR} where rank 0 "
                              f"{theirs}: the ranks see the shared file system differently. Run the "
                              "same command again once it has settled.")
        if decision["path"]:
            rank_zero_info(f"Resuming the run in {root} from {decision['path']}")

    # --- SLURM requeue --------------------------------------------------------------------------
    def _arm_requeue(self) -> None:
        if not self.requeue_signal:
            return
        if cluster.requeue_armable():
            signum = getattr(signal, self.requeue_signal)
            self._previous_handler = signal.signal(signum, self._on_signal)
            rank_zero_info(f"SLURM job {os.environ.get('SLURM_JOB_ID')}: on {self.requeue_signal} the "
                           "run saves a checkpoint at the next step and requeues itself.")
        elif cluster.in_slurm_job():
            rank_zero_warn(f"{cluster.describe()}. Checkpoints are still written every "
                           f"{self.every_n_steps} steps.")

    def teardown(self, trainer, module, stage) -> None:
        if self._previous_handler is not None:
            # After a requeue the process is stopping anyway: the signal reaches the ranks at
            # their own moments, and a late one must not kill a rank that already stopped.
            handler = signal.SIG_IGN if self.requeued else self._previous_handler
            signal.signal(getattr(signal, self.requeue_signal), handler)
            self._previous_handler = None

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True  # acted on at the next step boundary, never inside a step

    def _requeue_requested(self, trainer: pl.Trainer, step: int) -> bool:
        if trainer.world_size == 1:
            return self.signalled
        if step % self.signal_check_every:
            return False
        flag = torch.tensor(float(self.signalled), device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="sum") > 0)

    def _requeue(self, trainer: pl.Trainer) -> None:
        self.signalled = False
        self.requeued = True
        trainer.should_stop = True
        if not trainer.is_global_zero:
            return
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
        if not job:
            rank_zero_warn("requeue signal outside a SLURM job: checkpoint saved, stopping without requeue")
            return
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode == 0:
            rank_zero_info(f"SLURM job {job} requeued; it goes on from step {trainer.global_step}.")
        else:
            rank_zero_warn(f"scontrol requeue {job} failed ({result.returncode}): {result.stderr.strip()}; "
                           f"the checkpoint at step {trainer.global_step} is saved: submit the job again.")


def stopping_for_requeue(trainer: pl.Trainer) -> bool:
    """The run stops because it was requeued: end-of-training work (the final backbone, pictures)
    is for the run that finishes, not for this one."""
    return any(isinstance(cb, RunCheckpoints) and cb.requeued for cb in trainer.callbacks)


def stopped_message() -> tuple[int, str] | None:
    """(exit status 128 + signal, one line on how to resume) if a signal stopped the run."""
    if not STOPPED:
        return None
    number = getattr(signal, STOPPED["signal"])
    where = (f"the newest checkpoint is {STOPPED['checkpoint']}" if STOPPED.get("checkpoint")
             else "no checkpoint was written yet")
    return 128 + number, (f"stopped by {STOPPED['signal']} at step {STOPPED['step']}; {where}: run the same "
                          "command again to resume.")
