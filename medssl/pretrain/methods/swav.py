"""SwAV: swapped prediction of online cluster assignments, with multi-crop (lightly pieces)."""
from __future__ import annotations

import torch
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes

from .base import PretrainMethod, float32
from .optimizer import OptimizerConfig
from .queue import Queue


class SwAV(PretrainMethod):
    """Views: ``n_high_res`` global crops first, then the low-resolution crops.

    Defaults are the study's (Wolf et al., Sci. Rep. 2023): 500 prototypes frozen for the first epoch,
    temperature 0.1, Sinkhorn eps 0.05 with 3 iterations gathered over all processes, head
    2048-2048-BN-ReLU-128, LARS lr 0.15 with 10 warm-up epochs then cosine to 0 per step.
    ``queue_length > 0`` adds the SwAV feature queue (per high-res crop, gathered over processes)
    from epoch ``queue_start_epoch`` on; the study used none.

    Args:
        hidden_dim: hidden width of the projection head.
        out_dim: width of the projection (and of the prototypes).
        n_prototypes: number of prototypes (clusters).
        temperature: temperature of the swapped-prediction loss.
        sinkhorn_iterations: Sinkhorn-Knopp iterations per step.
        sinkhorn_epsilon: Sinkhorn's entropy weight.
        freeze_prototypes_epochs: epochs during which the prototypes are not updated.
        n_high_res: how many of the views are high-resolution (global) crops: the first ones.
        queue_length: feature-queue rows per high-resolution crop; 0: no queue.
        queue_start_epoch: first epoch whose loss uses the queue.
        optimizer: optimiser and learning-rate schedule (default ``SwAV.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "swav"
    OPTIMIZER = OptimizerConfig(name="lars", lr=0.15, weight_decay=1e-6, momentum=0.9, warmup_epochs=10)
    TINY = dict(hidden_dim=64, out_dim=16, n_prototypes=8, queue_length=32, queue_start_epoch=1)

    def __init__(self, hidden_dim: int = 2048, out_dim: int = 128, n_prototypes: int = 500,
                 temperature: float = 0.1, sinkhorn_iterations: int = 3,
                 sinkhorn_epsilon: float = 0.05, freeze_prototypes_epochs: int = 1,
                 n_high_res: int = 2, queue_length: int = 0, queue_start_epoch: int = 15,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = SwaVProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.prototypes = SwaVPrototypes(out_dim, n_prototypes)
        self.criterion = SwaVLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                  sinkhorn_epsilon=sinkhorn_epsilon,
                                  sinkhorn_gather_distributed=torch.distributed.is_available())
        self.queues = torch.nn.ModuleList(
            [Queue((queue_length, out_dim), gather_distributed=True)
             for _ in range(n_high_res)] if queue_length > 0 else [])
        self.queue_in_loss = queue_start_epoch <= 0  # set at every batch start

    def embed(self, crops: list[torch.Tensor]) -> list[torch.Tensor]:
        """Normalised projections, one backbone pass per crop resolution."""
        if not crops:
            return []
        features = self.backbone(torch.cat(crops))
        with float32():
            z = torch.nn.functional.normalize(self.projection_head(features.float()), dim=1)
        return list(z.chunk(len(crops)))

    def training_loss(self, batch):
        views = self.views_to_device_format(batch)
        self.prototypes.normalize()
        high = self.embed(views[: self.hparams.n_high_res])
        low = self.embed(views[self.hparams.n_high_res:])
        with float32():  # the prototypes, the queue and Sinkhorn's iterations
            high_p = [self.prototypes(z) for z in high]
            low_p = [self.prototypes(z) for z in low]
            queue_p = self.queue_predictions(high)
            return self.criterion(high_p, low_p, queue_p), {}

    @torch.no_grad()
    def queue_predictions(self, high: list[torch.Tensor]):
        if not len(self.queues):
            return None
        queued = []
        for queue, z in zip(self.queues, high):
            _, bank = queue(z.detach(), update=True)
            queued.append(bank.T.to(z.dtype))
        if not self.queue_in_loss:
            return None
        return [self.prototypes(q) for q in queued]

    def on_train_batch_start(self, batch, batch_idx) -> None:
        super().on_train_batch_start(batch, batch_idx)
        # a plain flag for the loss, which never reads the trainer's counters (torch.compile
        # would recompile the loss whenever one changes); set every batch, since a run resumed
        # mid-epoch gets no on_train_epoch_start
        self.queue_in_loss = self.current_epoch >= self.hparams.queue_start_epoch

    def on_before_optimizer_step(self, optimizer) -> None:
        # Frozen prototypes: drop their gradients after the (DDP-synchronised) backward pass.
        if self.current_epoch < self.hparams.freeze_prototypes_epochs:
            for p in self.prototypes.parameters():
                p.grad = None
