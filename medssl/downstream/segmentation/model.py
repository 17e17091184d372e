"""A segmentation network whose encoder is the exported backbone.

segmentation-models-pytorch's ResNet encoders subclass torchvision's ResNet and keep its
parameter names, so the trunk the one checkpoint loader reads (torchvision names, every tensor
checked) loads into ``model.encoder`` as it is: no key mapping, no second loader.
"""
from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from ...checkpoints import LoadReport, read_backbone

DECODERS = {"unet": smp.Unet, "fpn": smp.FPN}
DEFAULT_ARCH = "resnet50"


def segmentation_model(checkpoint: str | None, num_classes: int, arch: str | None = None, decoder: str = "unet",
                       trust: bool = False) -> tuple[nn.Module, LoadReport | None]:
    """(network, load report or None): ``decoder`` (``unet`` or ``fpn``) over a ResNet encoder of
    ``arch`` (None: the checkpoint's, else resnet50), with ``num_classes`` output channels (the
    background included). The encoder holds ``checkpoint``'s backbone; None: random init."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes is {num_classes}: a segmentation needs the background and one class")
    state, report = read_backbone(checkpoint, arch, trust) if checkpoint else (None, None)
    arch = report.arch if report else arch or DEFAULT_ARCH
    model = DECODERS[decoder](encoder_name=arch, encoder_weights=None, in_channels=3, classes=num_classes)
    if state is not None:
        model.encoder.load_state_dict(state)  # strict: the trunk's every tensor, nothing else
    return model, report
