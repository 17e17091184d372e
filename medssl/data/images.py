"""Picture files (PNG 8/16 bit, JPEG, TIFF, BMP): which suffixes they have, and the one reader
that ingestion and the downstream tasks share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UnreadableInput

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
KEPT_MODES = ("I;16", "I;16B", "I;16L", "I", "F", "L")  # grey modes read as they are
WHITE_16 = 65535  # white of 16- and 32-bit integer pictures
WHITE_8 = 255  # of the others (8-bit, colour converted to grey, float)


def read_picture(path: str | Path) -> tuple[np.ndarray, int]:
    """(grey values as stored, float32 (H, W); the value of white: 255 or 65535).

    Colour pictures are converted to grey. The whole file is decoded here, so a truncated JPEG
    fails now rather than later. UnreadableInput names a possible decompression bomb (over PIL's
    limit on declared pixels), a file PIL cannot decode, a picture that is not 2D, and NaN or
    infinite values (float TIFF).
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in KEPT_MODES:
                values = np.asarray(image, dtype=np.float32)
            else:
                values = np.asarray(image.convert("L"), dtype=np.float32)
    except Image.DecompressionBombError as err:
        raise UnreadableInput(path, f"refused as a possible decompression bomb: {err}") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UnreadableInput(path, f"unreadable image: {type(err).__name__}: {err}") from err
    if values.ndim != 2:
        raise UnreadableInput(path, f"image has shape {values.shape}, expected 2D")
    if not np.isfinite(values).all():
        raise UnreadableInput(path, "image holds NaN or infinite values: not stored")
    return values, WHITE_16 if mode.startswith("I") else WHITE_8
