"""SimCLR: two views of an image attract, the batch's other images repel (lightly pieces)."""
from __future__ import annotations

from lightly.models.modules import SimCLRProjectionHead

from .base import TwoViewMethod
from .losses import NTXentLoss
from .optimizer import OptimizerConfig


class SimCLR(TwoViewMethod):
    """Views: two crops.

    Defaults are the paper's for ResNet-50 (Chen et al., ICML 2020): projection head
    2048-2048-BN-ReLU-128-BN, NT-Xent temperature 0.1 with the negatives of the whole batch
    (gathered over all processes), LARS lr 0.3 per 256 images (``optimizer.lr``, scaled to the
    real total batch: 4.8 at 4096), weight decay 1e-6, neither on biases and norms, 10 warm-up
    epochs then cosine to 0 per step.

    Args:
        hidden_dim: hidden width of the projection head.
        out_dim: width of the projection.
        temperature: temperature of the NT-Xent loss.
        optimizer: optimiser and learning-rate schedule (default ``SimCLR.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "simclr"
    OPTIMIZER = OptimizerConfig(name="lars", lr=0.3, weight_decay=1e-6, momentum=0.9, warmup_epochs=10)
    TINY = dict(hidden_dim=64, out_dim=16)
    lr_per_256_images = True
    decay_biases_and_norms = False

    def __init__(self, hidden_dim: int = 2048, out_dim: int = 128, temperature: float = 0.1,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = SimCLRProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)
