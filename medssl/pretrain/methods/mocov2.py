"""MoCo v2: query/key encoders with a queue of negatives and the 2-layer MLP head (lightly)."""
from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead

from .base import float32
from .momentum import MomentumMethod
from .optimizer import OptimizerConfig
from .queue import Queue


class MoCoV2(MomentumMethod):
    """Views: [query crop, key crop].

    Defaults are the study's: queue 65536 (shared by all processes: keys are gathered before
    they are queued), key-encoder momentum 0.999, temperature 0.07, 128-d embedding, and the
    MoCo v2 MLP head 2048-2048-ReLU-128 (the original run had no MLP head: fixed here). SGD
    lr 0.015, momentum 0.9, weight decay 1e-4, cosine to 0 per step.

    Args:
        hidden_dim: hidden width of the projection head.
        out_dim: width of the embedding (and of the queue's rows).
        queue_length: negatives kept in the queue; 0: the batch's own only.
        temperature: temperature of the InfoNCE loss.
        key_momentum: the key encoder's EMA rate, the same at every step.
        optimizer: optimiser and learning-rate schedule (default ``MoCoV2.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "mocov2"
    OPTIMIZER = OptimizerConfig(name="sgd", lr=0.015, weight_decay=1e-4, momentum=0.9)
    TINY = dict(hidden_dim=64, out_dim=16, queue_length=32)

    def __init__(self, hidden_dim: int = 2048, out_dim: int = 128, queue_length: int = 65536,
                 temperature: float = 0.07, key_momentum: float = 0.999,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = MoCoProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.add_momentum_copies("backbone", "projection_head")
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)
        self.criterion.memory_bank = Queue((queue_length, out_dim), gather_distributed=True)

    def ema_rate(self, step: int) -> float:
        return self.hparams.key_momentum

    def training_loss(self, batch):
        x_query, x_key = self.views_to_device_format(batch[:2])
        query = self.backbone(x_query)
        with torch.no_grad():
            key = self.backbone_momentum(x_key)
        with float32():
            query = self.projection_head(query.float())
            with torch.no_grad():
                key = self.projection_head_momentum(key.float())
            return self.criterion(query, key), {}
