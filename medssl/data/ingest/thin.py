"""Redundancy thinning: drop near-duplicate neighbouring slices of a series.

A slice is kept if its structural similarity (SSIM, Gaussian window 11 px, sigma 1.5) to the last
KEPT slice of its series is below the threshold. Both slices are first scaled to [0, 1] by the
series' 0.5-99.5 percentile range, so the measure works the same for HU and for raw values.
The first slice of a series is always kept. Threshold 1.0 keeps everything; lower keeps fewer.
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.95


def keep_mask(slices: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask over (n, H, W) slices: which to keep."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim  # slow import

    n = len(slices)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    low, high = np.percentile(slices, [0.5, 99.5])
    scaled = torch.from_numpy(((np.asarray(slices, np.float32) - low) / max(high - low, 1e-6)).clip(0, 1))
    keep[0] = True
    last = scaled[0:1, None]
    for i in range(1, n):
        current = scaled[i:i + 1, None]
        if float(ssim(current, last, data_range=1.0)) < threshold:
            keep[i] = True
            last = current
    return keep
