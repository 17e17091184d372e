"""DINO: a student matches a momentum teacher's centred, sharpened outputs across multi-crop
views (self-distillation without labels; lightly pieces)."""
from __future__ import annotations

import torch
from lightly.models.modules import DINOProjectionHead
from lightly.utils.scheduler import cosine_schedule, linear_warmup_schedule

from .base import float32
from .losses import DINOLoss
from .momentum import MomentumMethod
from .optimizer import OptimizerConfig


class DINO(MomentumMethod):
    """Views: ``n_global`` global crops first (the teacher's), then the local crops.

    Defaults are the DINO repository's ResNet-50 recipe (Caron et al., ICCV 2021): head
    2048-2048-GELU-2048-GELU-256 (lightly's; no BatchNorm), l2-normalised, then a
    weight-normalised 65536-wide last layer kept fixed in the first epoch; student temperature
    0.1, teacher temperature 0.04, centre momentum 0.9. The teacher is a momentum copy of the student's
    backbone and head, its EMA rate tau going from 0.996 to 1 on a cosine over the REAL total
    number of optimizer steps; the teacher's temperature rises linearly from
    ``warmup_teacher_temp`` over ``warmup_teacher_temp_epochs`` (per step; the recipe has none).
    SGD lr 0.03 per 256 images (``optimizer.lr``, scaled to the real total batch), weight
    decay 1e-4, neither on biases and norms, 10 warm-up epochs then cosine to 0.

    Args:
        hidden_dim: hidden width of the head.
        bottleneck_dim: width of the head's bottleneck, before its last layer.
        out_dim: width of the last layer (the number of "prototypes" softmaxed over).
        batch_norm: BatchNorm after the head's hidden layers (the recipe has none).
        freeze_last_layer_epochs: epochs during which the head's last layer is not updated.
        n_global: how many of the views are global crops (seen by the teacher): the first ones.
        student_temp: temperature of the student's softmax.
        teacher_temp: temperature of the teacher's softmax after its warm-up.
        warmup_teacher_temp: the teacher's temperature at the first step.
        warmup_teacher_temp_epochs: length of the teacher temperature's warm-up (fractions allowed).
        center_momentum: EMA rate of the centre subtracted from the teacher's outputs.
        tau_base: the teacher's EMA rate at the first step (1 at the last).
        optimizer: optimiser and learning-rate schedule (default ``DINO.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "dino"
    OPTIMIZER = OptimizerConfig(name="sgd", lr=0.03, weight_decay=1e-4, momentum=0.9, warmup_epochs=10)
    TINY = dict(hidden_dim=64, bottleneck_dim=16, out_dim=64, warmup_teacher_temp=0.02,
                warmup_teacher_temp_epochs=1)  # the teacher temperature moves over the first epoch
    lr_per_256_images = True
    decay_biases_and_norms = False

    def __init__(self, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 65536,
                 batch_norm: bool = False, freeze_last_layer_epochs: int = 1, n_global: int = 2,
                 student_temp: float = 0.1, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: float = 0.0, center_momentum: float = 0.9,
                 tau_base: float = 0.996, optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)

        def head():
            return DINOProjectionHead(self.feature_dim, hidden_dim, bottleneck_dim, out_dim, batch_norm,
                                      freeze_last_layer=freeze_last_layer_epochs)

        self.projection_head = head()
        self.add_momentum_copies("backbone", projection_head=head())  # a copy with the same weights
        self.criterion = DINOLoss(out_dim, student_temp=student_temp, center_momentum=center_momentum)
        self.teacher_warmup_steps = 0  # set when training starts, from the real epoch length
        # an input of the (compiled) loss, set at every batch start: never read back
        self.register_buffer("teacher_temperature", torch.tensor(float(warmup_teacher_temp)), persistent=False)

    # --- schedules (host side) ---------------------------------------------------------------
    def tau(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps(), self.hparams.tau_base, 1.0)

    def ema_rate(self, step: int) -> float:
        return self.tau(step)

    def teacher_temp(self, step: int) -> float:
        return linear_warmup_schedule(step, self.teacher_warmup_steps, self.hparams.warmup_teacher_temp,
                                      self.hparams.teacher_temp)

    def on_train_start(self) -> None:
        epochs = self.hparams.warmup_teacher_temp_epochs
        self.teacher_warmup_steps = int(round(epochs * self.steps_per_epoch())) if epochs else 0

    def on_train_batch_start(self, batch, batch_idx) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.teacher_temperature.fill_(self.teacher_temp(self.global_step))

    def step_figures(self) -> dict[str, float]:
        return {"tau": self.tau(self.global_step), "teacher_temp": self.teacher_temp(self.global_step)}

    # --- the loss ----------------------------------------------------------------------------
    def embed(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """The student's outputs, one backbone pass per crop resolution."""
        if not crops:
            return []
        features = self.backbone(torch.cat(crops))
        with float32():
            return list(self.projection_head(features.float()).chunk(len(crops)))

    def training_loss(self, batch):
        views = self.views_to_device_format(batch)
        global_views, local_views = views[: self.hparams.n_global], views[self.hparams.n_global:]
        with torch.no_grad():
            features = self.backbone_momentum(torch.cat(global_views))
            with float32():
                teacher = self.projection_head_momentum(features.float())
        student = self.embed(global_views) + self.embed(local_views)
        with float32():
            loss = self.criterion(list(teacher.chunk(len(global_views))), student,
                                  teacher_temp=self.teacher_temperature)
        return loss, {}

    def on_before_optimizer_step(self, optimizer) -> None:
        # the last layer kept fixed in the first epochs: its gradients dropped after the
        # (DDP-synchronised) backward pass
        self.projection_head.cancel_last_layer_gradients(self.current_epoch)
