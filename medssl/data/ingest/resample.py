"""Bring slices to the store's square size: pad to square, then resize with antialiasing."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

INT16 = np.iinfo(np.int16)


def to_int16(values: np.ndarray, clip: tuple[int, int] | None = None) -> np.ndarray:
    low, high = clip if clip is not None else (INT16.min, INT16.max)
    return np.clip(np.rint(values), max(low, INT16.min), min(high, INT16.max)).astype(np.int16)


def fit_to_size(slices: np.ndarray, size: int, fill: float) -> tuple[np.ndarray, float]:
    """(n, H, W) -> float32 (n, size, size) and the factor by which pixel spacing grew.

    Slices already size x size are returned untouched (factor 1). Others are padded to a square
    with ``fill`` (air), keeping the aspect ratio, then resized with antialiased bilinear
    interpolation (area-like averaging when shrinking, smooth when enlarging).
    """
    n, h, w = slices.shape
    if h == w == size:
        return slices, 1.0
    side = max(h, w)
    if h != w:
        padded = np.full((n, side, side), fill, dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        padded[:, top:top + h, left:left + w] = slices
        slices = padded
    tensor = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized[:, 0].numpy(), side / size
