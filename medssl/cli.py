"""The LightningCLI shared by the pre-training scripts in ``Pre-Training/``."""
from __future__ import annotations

from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from .callbacks import ExportBackbone
from .data.datamodule import SliceStoreDataModule


def pretrain_cli(method, args=None, run: bool = True) -> LightningCLI:
    """``python Pre-Training/<method>.py fit --config Pre-Training/configs/<method>.yaml``.

    Trainer defaults: TensorBoard logs, a resumable ``last.ckpt`` (``fit --ckpt_path last``),
    the learning rate logged, and the backbone exported at the end.
    """
    return LightningCLI(
        method, SliceStoreDataModule, args=args, run=run, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=0),
            LearningRateMonitor(logging_interval="step"),
            ExportBackbone(),
        ]},
    )
