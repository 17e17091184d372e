"""Barlow Twins: the two views' embeddings cross-correlate to the identity (lightly pieces)."""
from __future__ import annotations

from lightly.models.modules import BarlowTwinsProjectionHead

from .base import TwoViewMethod
from .losses import BarlowTwinsLoss
from .optimizer import OptimizerConfig


class BarlowTwins(TwoViewMethod):
    """Views: two crops.

    Defaults are the paper's (Zbontar et al., ICML 2021): projector 2048-8192-8192-8192
    (BN-ReLU between), off-diagonal weight lambda 0.0051 (the official code's; the paper
    rounds it to 5e-3), the cross-correlation averaged over all processes, LARS lr 0.2 per 256
    images (``optimizer.lr``, scaled to the real total batch), weight decay 1.5e-6, neither on
    biases and norms, 10 warm-up epochs then cosine to 0.1 % per step. The paper's separate
    rate for biases and norms (0.0048) is not kept: they take the weights' rate, as in lightly.

    Args:
        hidden_dim: hidden width of the projector.
        out_dim: width of the embedding (the cross-correlation is out_dim x out_dim).
        lambda_param: weight of the off-diagonal (redundancy) term.
        optimizer: optimiser and learning-rate schedule (default ``BarlowTwins.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "barlowtwins"
    OPTIMIZER = OptimizerConfig(name="lars", lr=0.2, weight_decay=1.5e-6, momentum=0.9,
                                warmup_epochs=10, final_lr_ratio=0.001)
    TINY = dict(hidden_dim=64, out_dim=64)
    lr_per_256_images = True
    decay_biases_and_norms = False

    def __init__(self, hidden_dim: int = 8192, out_dim: int = 8192, lambda_param: float = 0.0051,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = BarlowTwinsProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param, gather_distributed=True)
