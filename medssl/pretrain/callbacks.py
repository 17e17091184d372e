"""Lightning callbacks shared by the pre-training runs (a method's own live beside it)."""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_only

from ..checkpoints.export import export_pretrained
from .resume import stopping_for_requeue


class ExportBackbone(pl.Callback):
    """Write ``<name>_backbone.pt`` at the end of training (and every ``every_n_epochs``
    epochs if set), into ``dirpath`` (default: the run's log directory).

    Args:
        dirpath: folder of the file; default: the run's log directory.
        name: file name stem; default: the method's name.
        every_n_epochs: also export every this many epochs; 0: at the end only.
    """

    def __init__(self, dirpath: str | None = None, name: str | None = None, every_n_epochs: int = 0):
        self.dirpath, self.name, self.every_n_epochs = dirpath, name, every_n_epochs
        self.last_path: Path | None = None

    def path_for(self, trainer, module) -> Path:
        folder = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        return folder / f"{self.name or module.method_name}_backbone.pt"

    def export(self, trainer: pl.Trainer, module) -> None:
        self._export(trainer, module, self.path_for(trainer, module))  # log_dir: on every rank

    @rank_zero_only
    def _export(self, trainer: pl.Trainer, module, path: Path) -> Path:
        datamodule = trainer.datamodule
        self.last_path = export_pretrained(
            module.backbone, path, method=module.method_name, arch=module.arch,
            epoch=trainer.current_epoch, step=trainer.global_step, model_config=module.hparams,
            data_config=datamodule.hparams if datamodule is not None else {})
        return self.last_path

    def on_train_epoch_end(self, trainer, module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0 \
                and not stopping_for_requeue(trainer):
            self.export(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        if not stopping_for_requeue(trainer):  # the requeued run exports at its real end
            self.export(trainer, module)


class ExportAtMinutes(ExportBackbone):
    """Write ``<name>_backbone_<M>min.pt`` into ``dirpath`` (default: ``<run>/backbones``) as the
    run's training time passes each of ``minutes``: the backbones a learning curve scores. The
    time is the wall-clock time of the training loop, summed over the sessions of a resumed run
    (it is kept in checkpoints, like the marks already written); the final backbone stays the
    run's ``<name>_backbone.pt``.

    Args:
        minutes: training minutes at which to export, e.g. ``[2.5, 5, 10, 20, 40]``.
        dirpath: folder of the files; default: ``backbones/`` in the run's log directory.
        name: file name stem; default: the method's name.
    """

    def __init__(self, minutes: list[float], dirpath: str | None = None, name: str | None = None):
        super().__init__(dirpath, name)
        self.minutes = sorted(float(m) for m in minutes)
        self.elapsed, self.written = 0.0, []
        self._since: float | None = None

    def path_for(self, trainer, module, minutes: float | None = None) -> Path:
        return self._folder / f"{self.name or module.method_name}_backbone_{minutes:g}min.pt"

    def on_train_start(self, trainer, module) -> None:
        # trainer.log_dir is a collective under DDP: asked here by every rank, not when one exports
        self._folder = Path(self.dirpath or Path(trainer.log_dir or trainer.default_root_dir) / "backbones")
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._since is not None:
            self.elapsed += now - self._since
        self._since = now
        for mark in self.minutes:
            if mark not in self.written and self.elapsed >= mark * 60:
                self._export(trainer, module, self.path_for(trainer, module, mark))
                self.written.append(mark)

    def on_train_epoch_end(self, trainer, module) -> None:
        pass

    def on_train_end(self, trainer, module) -> None:
        pass

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed, "written": list(self.written)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.elapsed, self.written = float(state_dict["elapsed"]), list(state_dict["written"])


class LoggedStepsProgressBar(TQDMProgressBar):
    """Lightning's progress bar, refreshed with the loss on the steps the logger writes, every
    ``log_every_n_steps``: reading the loss makes the host wait for the GPU. (A loss logged with
    ``prog_bar=True`` is read back by Lightning after every step, whatever the bar shows.)"""

    def get_metrics(self, trainer, module) -> dict:
        items = super().get_metrics(trainer, module)
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            items["loss"] = f"{float(loss):.4g}"
        return items

    @property
    def refresh_rate(self) -> int:
        try:
            return max(1, self.trainer.log_every_n_steps)
        except (AttributeError, TypeError):  # before the trainer is attached
            return super().refresh_rate
