"""Segmentation downstream: a U-Net or FPN (segmentation-models-pytorch) whose encoder is a
pre-trained backbone, for the question "how much does pre-training help my segmentation when I
have few labelled patients?"."""
