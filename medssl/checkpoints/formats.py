"""The checkpoint layouts the loader recognises. Code compares the members; their values are
what reports and messages show."""
from __future__ import annotations

from enum import Enum


class CheckpointFormat(str, Enum):
    MEDSSL_EXPORT = "medssl exported backbone"
    MEDSSL_LIGHTNING = "medssl Lightning checkpoint"
    SPARK_RELEASE = "SparK release (module)"
    MOCO_RELEASE = "MoCo release (Lightning, encoder_q)"
    BYOL_RELEASE = "BYOL release (Lightning, online_network.encoder)"
    SWAV_RELEASE = "SwAV release (Lightning, model.)"
    LIGHTLY = "lightly-style backbone."
    IMAGENET = "ImageNet classifier (torchvision / timm names, 1000-class fc)"
    TORCHVISION = "plain torchvision / timm ResNet"

    def __str__(self) -> str:
        return self.value
