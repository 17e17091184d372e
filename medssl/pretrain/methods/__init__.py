"""One LightningModule per pre-training method, and the registry that lists them.

The classes are imported when first used (``from medssl.pretrain.methods import SimCLR``), so
that listing the methods (``medssl pretrain --list``, ``--help``) needs no torch.
"""
from importlib import import_module

from .registry import METHODS, MethodEntry, method, method_names, register_method, unregister_method

# The registry: one line per method (configs: Pre-Training/configs/<name>.yaml, <name>_quick.yaml).
register_method("medssl.pretrain.methods.swav:SwAV", name="swav")
register_method("medssl.pretrain.methods.mocov2:MoCoV2", name="mocov2")
register_method("medssl.pretrain.methods.byol:BYOL", name="byol")
register_method("medssl.pretrain.methods.spark:SparK", name="spark")
register_method("medssl.pretrain.methods.dino:DINO", name="dino")
register_method("medssl.pretrain.methods.simclr:SimCLR", name="simclr")
register_method("medssl.pretrain.methods.barlowtwins:BarlowTwins", name="barlowtwins")
register_method("medssl.pretrain.methods.vicreg:VICReg", name="vicreg")

_MODULES = {"PretrainMethod": "base", "MomentumMethod": "momentum", "OptimizerConfig": "optimizer", "SwAV": "swav",
            "MoCoV2": "mocov2", "BYOL": "byol", "SparK": "spark", "DINO": "dino", "SimCLR": "simclr",
            "BarlowTwins": "barlowtwins", "VICReg": "vicreg"}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(import_module(f".{_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [*_MODULES, "METHODS", "MethodEntry", "method", "method_names", "register_method", "unregister_method"]
