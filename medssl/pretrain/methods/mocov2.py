"""MoCo v2: query/key encoders with a queue of negatives and the 2-layer MLP head (lightly)."""
from __future__ import annotations

import copy

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from .base import PretrainMethod
from .queue import Queue


class MoCoV2(PretrainMethod):
    """Views: [query crop, key crop].

    Defaults are the study's: queue 65536 (shared by all processes: keys are gathered before
    they are queued), key-encoder momentum 0.999, temperature 0.07, 128-d embedding, and the
    MoCo v2 MLP head 2048-2048-ReLU-128 (the original run had no MLP head: fixed here). SGD
    lr 0.015, momentum 0.9, weight decay 1e-4, cosine to 0 per step.
    """

    method_name = "mocov2"

    def __init__(self, arch: str = "resnet50", hidden_dim: int = 2048, out_dim: int = 128,
                 queue_length: int = 65536, temperature: float = 0.07,
                 key_momentum: float = 0.999, optimizer: str = "sgd", lr: float = 0.015,
                 weight_decay: float = 1e-4, momentum: float = 0.9, betas: tuple = (0.9, 0.999),
                 warmup_epochs: float = 0, warmup_start_ratio: float = 0.0,
                 final_lr_ratio: float = 0.0, channels_last: bool | None = None, compile: bool = False):
        super().__init__(arch=arch, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         momentum=momentum, betas=betas, warmup_epochs=warmup_epochs,
                         warmup_start_ratio=warmup_start_ratio, final_lr_ratio=final_lr_ratio,
                         channels_last=channels_last, compile=compile)
        self.projection_head = MoCoProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)
        self.criterion.memory_bank = Queue((queue_length, out_dim), gather_distributed=True)

    def training_loss(self, batch):
        x_query, x_key = self.views_to_device_format(batch[:2])
        query = self.projection_head(self.backbone(x_query))
        with torch.no_grad():
            key = self.projection_head_momentum(self.backbone_momentum(x_key))
        return self.criterion(query, key), {}

    def after_optimizer_step(self) -> None:
        m = self.hparams.key_momentum
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)
