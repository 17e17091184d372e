"""Lightning callbacks of the pre-training runs."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from .export import export_backbone


class ExportBackbone(pl.Callback):
    """Write ``<name>_backbone.pt`` at the end of training (and every ``every_n_epochs``
    epochs if set), into ``dirpath`` (default: the run's log directory)."""

    def __init__(self, dirpath: str | None = None, name: str | None = None, every_n_epochs: int = 0):
        self.dirpath, self.name, self.every_n_epochs = dirpath, name, every_n_epochs
        self.last_path: Path | None = None

    def path_for(self, trainer, module) -> Path:
        folder = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        return folder / f"{self.name or module.method_name}_backbone.pt"

    @rank_zero_only
    def export(self, trainer: pl.Trainer, module) -> Path:
        datamodule = trainer.datamodule
        self.last_path = export_backbone(
            module.backbone, self.path_for(trainer, module), method=module.method_name,
            arch=module.arch, epochs=trainer.current_epoch, steps=trainer.global_step,
            config={"model": dict(module.hparams),
                    "data": dict(datamodule.hparams) if datamodule is not None else {}},
            store_manifest_sha256=getattr(datamodule, "fingerprint", None))
        return self.last_path

    def on_train_epoch_end(self, trainer, module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.export(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.export(trainer, module)
