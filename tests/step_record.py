"""A callback for the resume tests: one JSON line per optimizer step with what a resumed run
must reproduce (learning rate, BYOL's tau, the queues, the loss). Used through the CLI:
``--trainer.callbacks+=step_record.StepRecord --trainer.callbacks.path FILE``."""
import json

import pytorch_lightning as pl

from medssl.pretrain.methods.queue import Queue


class StepRecord(pl.Callback):
    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        queues = [m for m in module.modules() if isinstance(m, Queue)]
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "batch": batch_idx,
               "lr": trainer.optimizers[0].param_groups[0]["lr"], "loss": float(outputs["loss"]),
               "queue_sum": [float(q.bank.double().sum()) for q in queues],
               "queue_position": [q.position for q in queues],
               "views_sum": float(sum(v.double().sum() for v in batch))}
        if hasattr(module, "tau"):
            row["tau"] = module.tau(trainer.global_step)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read(path) -> dict[int, dict]:
    """Step -> the last record of that step (a resumed run's records replace the killed run's)."""
    rows = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            rows[row["step"]] = row
    return rows


class SendSignal(pl.Callback):
    """Sends ``signal`` to this process after optimizer step ``at_step`` (a stand-in for SLURM's
    ``--signal=SIGUSR1@90``)."""

    def __init__(self, at_step: int, signal: str = "SIGUSR1"):
        self.at_step, self.signal = at_step, signal

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        import os
        import signal

        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), getattr(signal, self.signal))
