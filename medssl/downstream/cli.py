"""The LightningCLI of ``Downstream/finetune.py``: fit with model selection on the validation
set, then test the best checkpoint."""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from .finetune import FineTune, TaskDataModule
from .results import writing


class FineTuneTrainer(pl.Trainer):
    """A Trainer whose write errors that name no file (a full disk) name its log folder."""

    def fit(self, *args, **kwargs):
        with writing(self.log_dir or self.default_root_dir):
            return super().fit(*args, **kwargs)

    def test(self, *args, **kwargs):
        with writing(self.log_dir or self.default_root_dir):
            return super().test(*args, **kwargs)


class FineTuneCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda d: d.num_classes,
                              apply_on="instantiate")

    def after_fit(self) -> None:
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")


def finetune_cli(args=None, run: bool = True) -> FineTuneCLI:
    return FineTuneCLI(
        FineTune, TaskDataModule, trainer_class=FineTuneTrainer, args=args, run=run, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"max_epochs": 70, "callbacks": [
            ModelCheckpoint(monitor="val/accuracy", mode="max", save_top_k=1,
                            filename="best-{epoch}")]},
    )
