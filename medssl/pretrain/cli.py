"""The LightningCLI shared by ``medssl pretrain`` and the pre-training scripts in ``Pre-Training/``."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning_fabric.plugins.environments import ClusterEnvironment
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins import LayerSync
from pytorch_lightning.plugins.io import CheckpointIO
from pytorch_lightning.utilities import rank_zero_info

from ..models.sync_batchnorm import SyncFreeBatchNorm
from ..precision import default_precision
from ..quiet import quiet_lightning
from ..user_errors import one_line_errors
from . import methods
from .callbacks import ExportBackbone, LoggedStepsProgressBar
from .cluster import cluster_plugin
from .datamodule import SliceStoreDataModule
from .resume import STOPPED, AtomicCheckpointIO, RunCheckpoints, run_checkpoints, stopped_message

RUNS_DIR = "runs"


class PretrainCLI(LightningCLI):
    """One run = one directory (``--trainer.default_root_dir``, default ``runs/<method>``) holding
    its TensorBoard logs, config, checkpoints and exported backbone, with no ``version_N`` level:
    running the same command again finds the run and goes on from its newest intact checkpoint.
    ``--checkpoint.*`` sets how often checkpoints are written (``medssl.pretrain.resume.RunCheckpoints``)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(RunCheckpoints, "checkpoint")

    def instantiate_trainer(self, **kwargs):
        config = self._get(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or str(Path(RUNS_DIR) / self.model.method_name)
        kwargs["default_root_dir"] = root
        if config.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(root, name="", version="")
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        if config.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            kwargs["sync_batchnorm"] = False  # the same, without a wait on the GPU per layer
            plugins.append(SyncFreeBatchNorm())
        chosen = any(isinstance(p, ClusterEnvironment) for p in plugins)
        if not chosen and (plugin := cluster_plugin()) is not None:
            plugins.append(plugin)
        kwargs["plugins"] = plugins
        given = config.get("callbacks") or []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in given):
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [
                *self.trainer_defaults.get("callbacks", []), LoggedStepsProgressBar()]}
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """Resume: ``--ckpt_path`` unset or ``last`` = the run's newest intact checkpoint. Here,
        before the ranks are connected, each one only lists the folder; rank 0 then chooses the
        file and the others follow (``RunCheckpoints.setup``)."""
        config = self.config_init[self.subcommand]
        if config.get("weights_only") is None:
            config["weights_only"] = True  # our checkpoints hold plain types only
        if config.get("ckpt_path") not in (None, "last"):
            return
        root = Path(self.trainer.default_root_dir)
        resuming = bool(run_checkpoints(root))
        config["ckpt_path"] = str(RunCheckpoints.resume_path(root)) if resuming else None
        for callback in self.trainer.callbacks:
            if isinstance(callback, RunCheckpoints):
                callback.expect_resume(resuming)
        if not resuming:
            rank_zero_info(f"New run in {root} (run the same command again to resume it)")


def pretrain_cli(method: str | type, args=None, run: bool = True, prog: str | None = None) -> LightningCLI:
    """``medssl pretrain <method> fit --config Pre-Training/configs/<method>.yaml``, and
    ``python Pre-Training/<method>.py fit ...``.

    ``method``: a registered method's name (``medssl.pretrain.methods.registry``) or its class.
    ``args``: the command line after the method (default: ``sys.argv[1:]``); ``prog``: the
    command's name in ``--help`` (default: the script's).

    Trainer defaults: bf16 mixed precision on GPUs that have it (32-bit elsewhere), the run in
    ``runs/<method>`` (TensorBoard logs, checkpoints, backbone), checkpoints every 1000 steps and
    every epoch written atomically, SLURM requeue on SIGUSR1, the learning rate logged, and the
    backbone exported at the end. A run stopped by SIGTERM (a checkpoint at that step first) or
    Ctrl-C exits with 128 + the signal's number and one line on how to resume.
    """
    if isinstance(method, str):
        method = methods.method(method).cls
    STOPPED.clear()
    try:
        with one_line_errors():
            return _pretrain_cli(method, args, run, prog)
    except (SystemExit, KeyboardInterrupt):  # Lightning's ends of a run a signal stopped
        stopped = stopped_message()
        if stopped is None:
            raise
        status, line = stopped
        print(line, file=sys.stderr)
        raise SystemExit(status) from None


def _pretrain_cli(method, args, run: bool, prog: str | None) -> LightningCLI:
    with quiet_lightning(), warnings.catch_warnings():
        # args given in code replace the command line on purpose (medssl pretrain passes them)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return PretrainCLI(
            method, SliceStoreDataModule, args=args, run=run, seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": f"Pre-train a backbone with {method.method_name} on a slice store; 'fit "
                           "--help' lists every option, 'fit --print_config' every setting.",
                           **({"prog": prog} if prog else {})},
            auto_configure_optimizers=False,  # one way to set the optimiser: --model.optimizer.*
            trainer_defaults={"precision": default_precision(), "callbacks": [
                LearningRateMonitor(logging_interval="step"),
                ExportBackbone(),
            ]},
        )
