"""Lightning callbacks shared by the pre-training runs (a method's own live beside it)."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from ..checkpoints.export import export_pretrained


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
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.export(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.export(trainer, module)
