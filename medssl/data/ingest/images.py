"""2D image files (PNG 8/16 bit, JPEG, TIFF, BMP): values kept as stored (0..65535), not HU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .dicom import SkipItem

STORE_RANGE = (0, np.iinfo(np.uint16).max)  # image files go into uint16 stores


def read_image(path: str | Path) -> np.ndarray:
    """Grey values of one image as float32 (H, W); colour images are converted to grey."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                values = np.asarray(image, dtype=np.float32)
            else:
                values = np.asarray(image.convert("L"), dtype=np.float32)
    except Image.DecompressionBombError as err:  # PIL's limit on declared pixels
        raise SkipItem(f"refused as a possible decompression bomb: {err}") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise SkipItem(f"unreadable image: {type(err).__name__}: {err}") from err
    if values.ndim != 2:
        raise SkipItem(f"image has shape {values.shape}, expected 2D")
    if not np.isfinite(values).all():
        raise SkipItem("image holds NaN or infinite values: not stored")
    low, high = values.min(initial=0), values.max(initial=0)
    if low < STORE_RANGE[0] or high > STORE_RANGE[1]:
        raise SkipItem(f"values {low:.0f}..{high:.0f} outside {STORE_RANGE[0]}..{STORE_RANGE[1]}, "
                       "the range of a store of image files")
    return values
