"""BYOL: an online network predicts a slowly moving target network (lightly pieces)."""
from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.utils.scheduler import cosine_schedule

from .base import float32
from .momentum import MomentumMethod
from .optimizer import OptimizerConfig


class BYOL(MomentumMethod):
    """Views: two crops.

    Defaults are the study's: projector 2048-4096-BN-ReLU-256, predictor 256-4096-256, Adam lr
    1e-3, weight decay 1.5e-6, 10 warm-up epochs then cosine; the target network's EMA rate
    tau goes from 0.996 to 1 on a cosine over the REAL total number of optimizer steps (the
    original used max_epochs = -1, so its tau oscillated).

    Args:
        hidden_dim: hidden width of the projector and the predictor.
        out_dim: width of the projection (the predictor's input and output).
        tau_base: the target network's EMA rate at the first step (1 at the last).
        optimizer: optimiser and learning-rate schedule (default ``BYOL.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "byol"
    OPTIMIZER = OptimizerConfig(name="adam", lr=1e-3, weight_decay=1.5e-6, warmup_epochs=10)
    TINY = dict(hidden_dim=64, out_dim=16)

    def __init__(self, hidden_dim: int = 4096, out_dim: int = 256, tau_base: float = 0.996,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = BYOLProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.prediction_head = BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self.add_momentum_copies("backbone", "projection_head")
        self.criterion = NegativeCosineSimilarity()

    def tau(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps(), self.hparams.tau_base, 1.0)

    def ema_rate(self, step: int) -> float:
        return self.tau(step)

    def training_loss(self, batch):
        x0, x1 = self.views_to_device_format(batch[:2])
        both = torch.cat([x0, x1])
        online = self.backbone(both)
        with torch.no_grad():
            target = self.backbone_momentum(both)
        with float32():
            p0, p1 = self.prediction_head(self.projection_head(online.float())).chunk(2)
            with torch.no_grad():
                z0, z1 = self.projection_head_momentum(target.float()).chunk(2)
            return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0)), {}

    def step_figures(self) -> dict[str, float]:
        return {"tau": self.tau(self.global_step)}
