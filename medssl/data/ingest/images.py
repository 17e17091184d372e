"""2D image files in a store: values kept as stored (0..65535), not HU."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnreadableInput
from ..images import read_picture

STORE_RANGE = (0, np.iinfo(np.uint16).max)  # image files go into uint16 stores


def read_image(path: str | Path) -> np.ndarray:
    """Grey values of one image as float32 (H, W), checked to fit a store of image files."""
    values, _ = read_picture(path)
    low, high = values.min(initial=0), values.max(initial=0)
    if low < STORE_RANGE[0] or high > STORE_RANGE[1]:
        raise UnreadableInput(path, f"values {low:.0f}..{high:.0f} outside {STORE_RANGE[0]}.."
                                    f"{STORE_RANGE[1]}, the range of a store of image files")
    return values
