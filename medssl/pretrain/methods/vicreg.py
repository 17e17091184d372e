"""VICReg: invariance between views, variance and decorrelation within each (lightly pieces)."""
from __future__ import annotations

from lightly.models.modules import BarlowTwinsProjectionHead

from .base import TwoViewMethod
from .losses import VICRegLoss
from .optimizer import OptimizerConfig


class VICReg(TwoViewMethod):
    """Views: two crops.

    Defaults are the paper's (Bardes et al., ICLR 2022): expander 2048-8192-8192-8192 (BN-ReLU
    between: lightly's Barlow Twins projector, the same layers), loss weights 25 (invariance),
    25 (variance), 1 (covariance) with variance and covariance over the batch gathered from all
    processes, LARS lr 0.2 per 256 images (``optimizer.lr``, scaled to the real total batch),
    weight decay 1e-6, neither on biases and norms, 10 warm-up epochs then cosine to 0.1 %.

    Args:
        hidden_dim: hidden width of the expander.
        out_dim: width of the embedding.
        invariance_weight: weight of the invariance (mean squared distance) term, lambda.
        variance_weight: weight of the variance (hinge on each dimension's std) term, mu.
        covariance_weight: weight of the covariance (off-diagonal) term, nu.
        optimizer: optimiser and learning-rate schedule (default ``VICReg.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "vicreg"
    OPTIMIZER = OptimizerConfig(name="lars", lr=0.2, weight_decay=1e-6, momentum=0.9,
                                warmup_epochs=10, final_lr_ratio=0.001)
    TINY = dict(hidden_dim=64, out_dim=64)
    lr_per_256_images = True
    decay_biases_and_norms = False

    def __init__(self, hidden_dim: int = 8192, out_dim: int = 8192, invariance_weight: float = 25.0,
                 variance_weight: float = 25.0, covariance_weight: float = 1.0,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.projection_head = BarlowTwinsProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.criterion = VICRegLoss(lambda_param=invariance_weight, mu_param=variance_weight,
                                    nu_param=covariance_weight, gather_distributed=True)
