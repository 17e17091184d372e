"""BYOL: an online network predicts a slowly moving target network (lightly pieces)."""
from __future__ import annotations

import copy

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

from .base import PretrainMethod


class BYOL(PretrainMethod):
    """Views: two crops.

    Defaults are the study's: projector 2048-4096-BN-ReLU-256, predictor 256-4096-256, Adam lr
    1e-3, weight decay 1.5e-6, 10 warm-up epochs then cosine; the target network's EMA rate
    tau goes from 0.996 to 1 on a cosine over the REAL total number of optimizer steps (the
    original used max_epochs = -1, so its tau oscillated).
    """

    method_name = "byol"

    def __init__(self, arch: str = "resnet50", hidden_dim: int = 4096, out_dim: int = 256,
                 tau_base: float = 0.996, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 1.5e-6, momentum: float = 0.9, betas: tuple = (0.9, 0.999),
                 warmup_epochs: float = 10, warmup_start_ratio: float = 0.0,
                 final_lr_ratio: float = 0.0, channels_last: bool | None = None, compile: bool = False):
        super().__init__(arch=arch, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         momentum=momentum, betas=betas, warmup_epochs=warmup_epochs,
                         warmup_start_ratio=warmup_start_ratio, final_lr_ratio=final_lr_ratio,
                         channels_last=channels_last, compile=compile)
        self.projection_head = BYOLProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.prediction_head = BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()

    def tau(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps(), self.hparams.tau_base, 1.0)

    def training_loss(self, batch):
        x0, x1 = self.views_to_device_format(batch[:2])
        both = torch.cat([x0, x1])
        p0, p1 = self.prediction_head(self.projection_head(self.backbone(both))).chunk(2)
        with torch.no_grad():
            z0, z1 = self.projection_head_momentum(self.backbone_momentum(both)).chunk(2)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0)), {}

    def step_figures(self) -> dict[str, float]:
        return {"tau": self.tau(self.global_step)}

    def after_optimizer_step(self) -> None:
        tau = self.tau(self.global_step)
        update_momentum(self.backbone, self.backbone_momentum, tau)
        update_momentum(self.projection_head, self.projection_head_momentum, tau)
