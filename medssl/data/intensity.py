"""Mapping Hounsfield units to display or network intensities."""
from __future__ import annotations

import numpy as np

# Common CT windows as (level, width) in HU.
WINDOWS = {
    "lung": (-600, 1500),
    "abdomen": (40, 400),
    "mediastinum": (50, 350),
    "bone": (400, 1800),
    "brain": (40, 80),
    "full": (1024, 4096),  # -1024..3072, the study's "use all data"
}


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> float32 in [0, 1] through a linear window (values outside are clipped)."""
    low = level - width / 2.0
    return np.clip((np.asarray(hu, dtype=np.float32) - low) / float(width), 0.0, 1.0)


def to_uint8(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU -> 8-bit grey through a window, for pictures and 8-bit dataset formats."""
    return np.round(window(hu, level, width) * 255.0).astype(np.uint8)
