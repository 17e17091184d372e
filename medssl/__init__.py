"""medssl: self-supervised pre-training for medical CT and its evaluation on small datasets."""

__version__ = "0.1.0"
