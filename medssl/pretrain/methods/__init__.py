"""One LightningModule per pre-training method, and the registry that lists them."""
from .barlowtwins import BarlowTwins
from .base import PretrainMethod
from .byol import BYOL
from .dino import DINO
from .mocov2 import MoCoV2
from .momentum import MomentumMethod
from .optimizer import OptimizerConfig
from .registry import METHODS, MethodEntry, method, method_names, register_method, unregister_method
from .simclr import SimCLR
from .spark import SparK
from .swav import SwAV
from .vicreg import VICReg

# The registry: one line per method (configs: Pre-Training/configs/<name>.yaml, <name>_quick.yaml).
register_method(SwAV)
register_method(MoCoV2)
register_method(BYOL)
register_method(SparK)
register_method(DINO)
register_method(SimCLR)
register_method(BarlowTwins)
register_method(VICReg)

__all__ = ["PretrainMethod", "MomentumMethod", "OptimizerConfig", "SwAV", "MoCoV2", "BYOL", "SparK",
           "DINO", "SimCLR", "BarlowTwins", "VICReg", "METHODS", "MethodEntry", "method", "method_names",
           "register_method", "unregister_method"]
