"""The LightningCLI shared by the pre-training scripts in ``Pre-Training/``."""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from .callbacks import ExportBackbone
from .data.datamodule import SliceStoreDataModule


def pretrain_cli(method, args=None, run: bool = True) -> LightningCLI:
    """``python Pre-Training/<method>.py fit --config Pre-Training/configs/<method>.yaml``.

    Trainer defaults: bf16 mixed precision on GPUs that have it (32-bit elsewhere), TensorBoard logs, a resumable ``last.ckpt`` (``fit --ckpt_path last``),
    the learning rate logged, and the backbone exported at the end.
    """
    return LightningCLI(
        method, SliceStoreDataModule, args=args, run=run, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"precision": default_precision(), "callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=0),
            LearningRateMonitor(logging_interval="step"),
            ExportBackbone(),
        ]},
    )


def default_precision() -> str:
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if bf16 else "32-true"
