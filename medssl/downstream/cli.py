"""The fine-tune command (``medssl finetune``, ``Downstream/finetune.py``), which every sweep run goes through too: fit
with model selection on the validation set, then test the best checkpoint (mode ``finetune``) or
the classifier fit on the frozen features (modes ``knn`` and ``linear``: one epoch over the
un-augmented training images, no checkpoint).

The protocol's settings are the defaults of ``FineTune`` (model), ``TaskDataModule`` (data) and
``TRAINER_DEFAULTS`` below; ``medssl finetune fit --print_config`` shows them all. A segmentation
task (``--data.kind masks``) is fine-tuned by ``SegmentationFineTune`` instead of ``FineTune``:
the command reads the task's kind from the command line or its config files first.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import yaml
from jsonargparse import Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from ..precision import default_precision
from ..quiet import quiet_lightning
from .datamodule import TaskDataModule
from .finetune import FROZEN_MODES, FineTune
from .formats import family
from .results import writing
from .task_data import TaskError

TRAINER_DEFAULTS = {"max_epochs": 70, "devices": 1}


class FineTuneTrainer(pl.Trainer):
    """A Trainer whose write errors that name no file (a full disk) name its log folder, and
    that keeps the warnings of ``medssl.quiet.NOT_ACTIONABLE`` quiet."""

    def fit(self, *args, **kwargs):
        with writing(self.log_dir or self.default_root_dir), quiet_lightning():
            return super().fit(*args, **kwargs)

    def test(self, *args, **kwargs):
        with writing(self.log_dir or self.default_root_dir), quiet_lightning():
            return super().test(*args, **kwargs)


class FineTuneCLI(LightningCLI):
    """``verbose``: print the test results' table."""

    def __init__(self, *args, verbose: bool = True, **kwargs):
        self.verbose = verbose
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data", "model.num_classes", compute_fn=lambda d: d.num_classes,
                              apply_on="instantiate")
        # the data side feeds the backbone as it was pre-trained: it reads the checkpoint's mapping
        parser.link_arguments("model.checkpoint", "data.backbone", apply_on="parse")
        parser.link_arguments("model.trust_checkpoint", "data.trust_backbone", apply_on="parse")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        if family(config.data.kind) == "segmentation" and config.model.mode != "finetune":
            raise TaskError(f"{config.data.path}: a segmentation task is fine-tuned (--model.mode finetune); "
                            f"{config.model.mode!r} scores frozen features of whole images")
        if config.model.mode in FROZEN_MODES:  # features of the images themselves; nothing to checkpoint
            config.data.augment = False
            config.trainer.enable_checkpointing = False
            self.trainer_defaults = {k: v for k, v in self.trainer_defaults.items() if k != "callbacks"}

    def before_fit(self) -> None:
        # a task with fewer training batches than the logging interval logs once an epoch
        if self.datamodule.segmentation != (getattr(self.model, "MONITOR", None) == "val/dice"):
            kind = "segmentation" if self.datamodule.segmentation else "classification"
            raise ValueError(f"{self.datamodule.hparams.path}: a {kind} "
                             "task, but the command read another kind ahead of the parser: give --data.kind on the "
                             "command line or in a --config file")
        batches = len(self.datamodule.train_dataloader())
        self.trainer.log_every_n_steps = max(1, min(self.trainer.log_every_n_steps, batches))

    def after_fit(self) -> None:
        best = None if self.model.frozen else "best"  # the frozen modes' classifier lives in memory
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best, verbose=self.verbose)


class _Parsed(Exception):
    pass


class _ParseOnly(FineTuneCLI):
    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        raise _Parsed(self.config)  # before anything is seeded or built


def _kind_in_config(path: str, keys=("data", "kind")) -> str | None:
    """``data.kind`` of a config file (also under a subcommand: ``fit.data.kind``), or None."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # the parser names the file
    for root in (config, *(config.values() if isinstance(config, dict) else ())):
        value = root
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


def data_kind(args) -> str | None:
    """The task's kind the command line ``args`` will give, read ahead of the parser: the last of
    ``--data.kind`` and the ``data.kind`` of ``--config`` / ``--data`` files."""
    args = [str(a) for a in (sys.argv[1:] if args is None else args)]
    kind = None
    for i, arg in enumerate(args):
        name, has_value, value = arg.partition("=")
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) else ""
        if name == "--data.kind":
            kind = value
        elif name in ("--config", "-c"):
            kind = _kind_in_config(value) or kind
        elif name == "--data" and value.endswith((".yaml", ".yml", ".json")):
            kind = _kind_in_config(value, ("kind",)) or kind
    return kind


def model_class(args):
    """FineTune, or SegmentationFineTune for a segmentation task."""
    if family(data_kind(args) or "") == "segmentation":
        from .segmentation.finetune import SegmentationFineTune
        return SegmentationFineTune
    return FineTune


def _cli(cli_class, args, run: bool, **kwargs) -> FineTuneCLI:
    model = model_class(args)
    monitor = getattr(model, "MONITOR", "val/accuracy")
    trainer_defaults = {**TRAINER_DEFAULTS, "precision": default_precision(), "callbacks": [
        ModelCheckpoint(monitor=monitor, mode="max", save_top_k=1, filename="best-{epoch}")]}
    with warnings.catch_warnings():  # args given in code replace the command line on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return cli_class(model, TaskDataModule, trainer_class=FineTuneTrainer, args=args, run=run,
                         seed_everything_default=0, save_config_kwargs={"overwrite": True},
                         trainer_defaults=trainer_defaults, auto_configure_optimizers=False, **kwargs)


def finetune_cli(args=None, run: bool = True, verbose: bool = True, prog: str | None = None) -> FineTuneCLI:
    """``args``: the command line (default: ``sys.argv[1:]``); ``prog``: the command's name in
    ``--help`` (default: the script's)."""
    about = {"description": "Fine-tune, or probe (linear, kNN), a pre-trained backbone on a labelled task; "
             "'fit --help' lists every option, 'fit --print_config' every setting."}
    return _cli(FineTuneCLI, args, run, verbose=verbose, parser_kwargs={**about, **({"prog": prog} if prog else {})})


def finetune_settings(args) -> Namespace:
    """Every setting the fine-tune command would use for ``args`` (without a subcommand),
    defaults filled in; nothing is seeded, loaded or built."""
    try:
        _cli(_ParseOnly, args, run=False)
    except _Parsed as parsed:
        settings = parsed.args[0]
    return settings
