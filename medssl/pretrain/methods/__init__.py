"""One LightningModule per pre-training method."""
from .base import PretrainMethod
from .byol import BYOL
from .mocov2 import MoCoV2
from .spark import SparK
from .swav import SwAV

METHODS = {"swav": SwAV, "mocov2": MoCoV2, "byol": BYOL, "spark": SparK}

__all__ = ["PretrainMethod", "SwAV", "MoCoV2", "BYOL", "SparK", "METHODS"]
