"""torchvision ResNet backbones without their classifier: state-dict names stay torchvision's."""
from __future__ import annotations

import torch.nn as nn
from torchvision import models

BACKBONES = {  # name -> (constructor, feature width)
    "resnet18": (models.resnet18, 512),
    "resnet34": (models.resnet34, 512),
    "resnet50": (models.resnet50, 2048),
    "resnet101": (models.resnet101, 2048),
}


def feature_dim(arch: str) -> int:
    return BACKBONES[_check(arch)][1]


def _check(arch: str) -> str:
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone {arch!r}; choose one of {sorted(BACKBONES)}")
    return arch


def build_backbone(arch: str = "resnet50", zero_init_residual: bool = False) -> nn.Module:
    """A randomly initialised torchvision ResNet whose ``fc`` is an Identity: it returns the
    pooled features, and its state dict has torchvision's key names and no ``fc``.
    ``zero_init_residual``: the last BatchNorm of every residual block starts with weight 0
    (as timm's ResNets do; SparK uses it)."""
    model = BACKBONES[_check(arch)][0](weights=None, zero_init_residual=zero_init_residual)
    model.fc = nn.Identity()
    return model
