"""Backbones (torchvision ResNets) and the SparK sparse encoder/decoder."""
from .backbone import BACKBONES, build_backbone, feature_dim

__all__ = ["BACKBONES", "build_backbone", "feature_dim"]
