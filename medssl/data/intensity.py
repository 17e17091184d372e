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


def scaled(values, low, width):
    """Tensor values -> float32 in [0, 1]: (values - low) / width, clipped."""
    return ((values.float() - low) / width).clamp_(0.0, 1.0)


class HUToIntensity:
    """The documented step from stored values (HU, int16) to network intensities in [0, 1].

    mode:
      - ``full``: the whole CT range -1024..3071 HU, linearly (the study's "use all data", but
        with one mapping for every slice instead of per-slice min-max);
      - ``window``: a fixed window ``(level, width)`` in HU, or a named one (``window_name``:
        lung, abdomen, mediastinum, bone, brain);
      - ``random_window``: per image, a level and width drawn uniformly from ``level_range``
        and ``width_range`` (an augmentation that teaches the network several windows);
      - ``range``: ``low``..``high`` for stores whose values are not HU (``units: raw``).
    Works on numpy arrays or torch tensors of any shape.
    """

    def __init__(self, mode: str = "full", level: float = 40.0, width: float = 400.0,
                 window_name: str | None = None, level_range=(-600.0, 100.0),
                 width_range=(400.0, 2000.0), low: float = 0.0, high: float = 255.0):
        if mode not in ("full", "window", "random_window", "range"):
            raise ValueError(f"unknown intensity mode {mode!r}")
        if window_name is not None:
            level, width = WINDOWS[window_name]
        if mode == "full":
            level, width = WINDOWS["full"]
        if mode == "range":
            level, width = (low + high) / 2, high - low
        self.mode, self.level, self.width = mode, float(level), float(width)
        self.level_range, self.width_range = tuple(level_range), tuple(width_range)

    def __call__(self, values):
        import torch

        level, width = self.level, self.width
        if self.mode == "random_window":
            level = float(torch.empty(()).uniform_(*self.level_range))
            width = float(torch.empty(()).uniform_(*self.width_range))
        if isinstance(values, torch.Tensor):
            return scaled(values, level - width / 2, width)
        return window(values, level, width)

    def batch(self, values):
        """A (B, ...) tensor, one window per image in ``random_window`` mode; the draws happen on
        the host and are copied without waiting for the device."""
        import torch

        if self.mode != "random_window":
            return self(values)
        shape = (len(values),) + (1,) * (values.dim() - 1)
        level = torch.empty(len(values)).uniform_(*self.level_range)
        width = torch.empty(len(values)).uniform_(*self.width_range)
        low, width = (v.view(shape).to(values.device, non_blocking=True) for v in (level - width / 2, width))
        return scaled(values, low, width)

    def __repr__(self) -> str:
        return f"HUToIntensity(mode={self.mode!r}, level={self.level}, width={self.width})"
