"""What every pre-training method shares: backbone, optimizer, per-step schedule, export."""
from __future__ import annotations

from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from lightly.models.utils import get_weight_decay_parameters
from pytorch_lightning.callbacks import Timer

from ...checkpoints.loader import MEDSSL_KEY
from ...models import build_backbone, feature_dim
from ..resume import STEP_STREAM, run_seed, step_seed
from .optimizer import OptimizerConfig
from .queue import Queue

UNBOUNDED = 2**31  # steps of a max_time run before its first step is timed


@contextmanager
def float32():
    """Autocast off: the heads and the loss compute in float32 (their inputs cast with
    ``.float()``) whatever the run's precision. In bf16 (8 significant bits) logits divided by a
    temperature of 0.05-0.2, Sinkhorn's iterations, a queue of 65,536 negatives, an 8192 x 8192
    cross-correlation or a covariance lose the differences they learn from; the backbone keeps
    the run's precision."""
    with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
        yield


class PretrainMethod(pl.LightningModule):
    """Base of every pre-training method (see ``medssl.pretrain.methods.registry``).

    A method sets ``method_name`` (its registry name, the name of its run folder and exported
    backbone), its default optimiser settings ``OPTIMIZER``, its smallest settings ``TINY``
    (what every test and CPU check builds it with), and writes ``training_loss``.
    Its constructor takes its own arguments, ``optimizer`` defaulting to its ``OPTIMIZER``, and
    ``**kwargs`` passed on here (``arch``, ``channels_last``, ``compile``).

    The learning rate is updated every optimizer step and built from the REAL number of steps
    (``total_steps``: from the epochs or steps asked for, or from the time a ``max_time`` run
    has left); see ``OptimizerConfig``.

    Args:
        arch: torchvision ResNet trunk (``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``).
        optimizer: optimiser and learning-rate schedule (``OptimizerConfig``); a config names
            only the fields it changes from the method's defaults.
        channels_last: channels-last memory format: true, false, or null = on CUDA devices only.
        compile: ``torch.compile`` the whole training loss.
    """

    method_name = "base"
    OPTIMIZER = OptimizerConfig()
    # constructor arguments for tests and CPU checks: tiny heads, every part still at work (queues that
    # fill within a few steps of batch 8 and join from the second epoch, schedules that move)
    TINY: dict = {}
    lr_per_256_images = False  # True: optimizer.lr is for a total batch of 256, scaled to the real one
    decay_biases_and_norms = True  # False: no weight decay (nor LARS scaling) on biases and norm layers

    def __init__(self, arch: str = "resnet50", optimizer: OptimizerConfig = OPTIMIZER,
                 channels_last: bool | None = None, compile: bool = False):
        super().__init__()
        self.save_hyperparameters()  # collects the subclass's arguments too
        self.optimizer_config = OptimizerConfig.of(optimizer)
        # plain types in checkpoints and in what loggers write (hparams.yaml, TensorBoard):
        # saved again, so that ``hparams_initial`` holds the dict too
        self.save_hyperparameters({**self.hparams, "optimizer": self.optimizer_config.as_dict()})
        self.arch = arch
        self.backbone = build_backbone(arch)
        self.feature_dim = feature_dim(arch)

    # --- hooks shared by the methods ---------------------------------------------------------
    def configure_model(self) -> None:
        # before the strategy wraps the model (DDP builds its gradient buckets from the
        # parameters' strides then) and moves it to the device (which keeps the format)
        if self.uses_channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.compile and getattr(self, "_compiled_loss", None) is None:
            # The whole loss as one graph: backbones, heads, momentum encoders, queues, masks and
            # loss (tests/test_compile.py: no graph break, no recompilation from step to step).
            # The class's function, not a bound method: nothing refers back to the module, whose
            # state-dict names and eager forward (export, kNN monitor, pictures) stay as they are.
            self._compiled_loss = torch.compile(type(self).training_loss)

    # --- the step: a pure loss (what torch.compile traces), then logging ---------------------
    def training_loss(self, batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The step's loss and any tensors to log with it, from the batch of views. No logging,
        no reads back from the device, no branching on tensor values and nothing from the
        trainer's counters (step, epoch): a schedule's value is a plain attribute set by a hook."""
        raise NotImplementedError

    def step_figures(self) -> dict[str, float]:
        """Host-side figures of the step to log (schedules), computed outside the loss."""
        return {}

    def training_step(self, batch, batch_idx):
        compiled = getattr(self, "_compiled_loss", None)
        loss, figures = compiled(self, batch) if compiled is not None else self.training_loss(batch)
        self.log_step(loss, len(batch[0]), **figures, **self.step_figures())
        return loss

    @property
    def uses_channels_last(self) -> bool:
        """``channels_last``: True, False, or None = on CUDA devices only (the default): the
        device the trainer trains on, before the model is moved there."""
        choice = self.hparams.channels_last
        if choice is not None:
            return bool(choice)
        try:
            device = self.trainer.strategy.root_device
        except RuntimeError:  # not attached to a Trainer
            device = self.device
        return device.type == "cuda"

    def views_to_device_format(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.uses_channels_last:
            return [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Every random draw of a step (SparK's masks, drop-path) comes from (seed, rank, epoch,
        # batch): a resumed run draws what the uninterrupted one would have. Host-side only.
        # The device views of the same batch draw from a stream of their own (VIEW_STREAM).
        torch.manual_seed(step_seed(run_seed(), self.global_rank, self.current_epoch, batch_idx, STEP_STREAM))

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Momentum-encoder updates and the like: once per optimizer step (not per micro-batch)."""

    # --- optimisation ------------------------------------------------------------------------
    def steps_per_epoch(self) -> float:
        """Optimizer steps per epoch, from the real data (also for runs set by max_steps)."""
        trainer = self.trainer
        if trainer.max_epochs and trainer.max_epochs > 0 and trainer.max_steps < 0:
            return trainer.estimated_stepping_batches / trainer.max_epochs
        trainer.fit_loop.setup_data()  # loads the train dataloader to count its batches
        return max(1.0, trainer.num_training_batches / trainer.accumulate_grad_batches)

    def parameter_groups(self):
        """The trainable parameters; with ``decay_biases_and_norms = False`` two groups (lightly's
        split): weights, and biases and norm layers without weight decay (LARS then leaves them
        out of its layer-wise scaling too, as SimCLR, Barlow Twins, VICReg and DINO train)."""
        if self.decay_biases_and_norms:
            return [p for p in self.parameters() if p.requires_grad]
        decay, no_decay = (
            [p for p in group if p.requires_grad] for group in get_weight_decay_parameters([self]))
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def total_batch_size(self) -> int:
        """Images per optimizer step over all processes."""
        trainer = self.trainer
        batch = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule else None
        if batch is None:
            if trainer.train_dataloader is None:
                trainer.fit_loop.setup_data()  # loads the train dataloader
            batch = trainer.train_dataloader.batch_size
        return batch * trainer.world_size * trainer.accumulate_grad_batches

    def peak_lr(self) -> float:
        """``optimizer.lr``; with ``lr_per_256_images``, scaled by the total batch / 256."""
        lr = self.optimizer_config.lr
        return lr * self.total_batch_size() / 256 if self.lr_per_256_images else lr

    def build_optimizer(self, params) -> torch.optim.Optimizer:
        return self.optimizer_config.build(params, self.peak_lr(), fused=self.device.type == "cuda")

    def configure_optimizers(self):
        optimizer = self.build_optimizer(self.parameter_groups())
        warmup_epochs = self.optimizer_config.warmup_epochs
        warmup = int(round(warmup_epochs * self.steps_per_epoch())) if warmup_epochs else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.optimizer_config.lr_factor(step, self.total_steps(step), warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def total_steps(self, step: int | None = None) -> int:
        """The run's length in optimizer steps, which every schedule (learning rate, BYOL's tau,
        SparK's weight decay) stretches over: from ``max_epochs`` / ``max_steps``, and for a run
        limited by ``max_time`` the steps that fit in its time, estimated from the time per step
        so far (re-estimated every step; the shorter limit wins)."""
        trainer = self.trainer
        step = self.global_step if step is None else step
        total = float(trainer.estimated_stepping_batches)  # inf when only max_time bounds the run
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining("train") if timer is not None else None
        if remaining is not None:
            elapsed = timer.time_elapsed("train")
            if step > 0 and elapsed > 0:
                total = min(total, max(step + 1, step + remaining * step / elapsed))
        return max(int(min(total, UNBOUNDED)), 1)  # unbounded: no step timed yet

    # --- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[MEDSSL_KEY] = {"method": self.method_name, "arch": self.arch}
        # lightly keeps queues out of the state dict; keep them so a resumed run goes on with them
        checkpoint[MEDSSL_KEY]["queues"] = {
            name: {"bank": m.bank.detach().cpu(), "ptr": m.bank_ptr.detach().cpu()}
            for name, m in self.named_modules() if isinstance(m, Queue)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        queues = checkpoint.get(MEDSSL_KEY, {}).get("queues", {})
        modules = dict(self.named_modules())
        for name, saved in queues.items():
            if name in modules:
                modules[name].restore(saved["bank"], saved["ptr"])

    def log_step(self, loss: torch.Tensor, batch_size: int, **extra) -> None:
        """The loss every step (a tensor, read by the logger and by ``LoggedStepsProgressBar``
        only on the steps they write: with ``prog_bar=True`` Lightning would read it after every
        step), the other figures on the steps the logger writes (a Python float logged is a copy
        to the device)."""
        self.log("train/loss", loss, batch_size=batch_size, sync_dist=False)
        if extra and self.logs_this_step():
            for name, value in extra.items():
                self.log(f"train/{name}", value, batch_size=batch_size)

    def logs_this_step(self) -> bool:
        """The logger writes at this step (Lightning's rule: every ``log_every_n_steps``)."""
        try:
            every = self.trainer.log_every_n_steps
        except RuntimeError:  # not attached to a Trainer
            return True
        return (self.global_step + 1) % max(1, every) == 0


class TwoViewMethod(PretrainMethod):
    """A method that embeds two crops of each image with ``projection_head`` over the backbone
    (one pass for both) and scores the pair with ``criterion`` (SimCLR, Barlow Twins, VICReg)."""

    def training_loss(self, batch):
        x0, x1 = self.views_to_device_format(batch[:2])
        features = self.backbone(torch.cat([x0, x1]))
        with float32():
            z0, z1 = self.projection_head(features.float()).chunk(2)
            return self.criterion(z0, z1), {}
