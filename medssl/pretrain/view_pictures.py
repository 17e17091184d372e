"""Pictures of what a pre-training config's views do to a CT slice: one row per config, the slice
on the left, then views drawn with the same seed, so that rows differ by their views only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.intensity import WINDOWS, HUToIntensity
from ..data.preview import save_figure
from .views import MultiView, ViewSpec

SHOWN_WINDOW = "lung"


def draw_views(slice_hu: np.ndarray, data: dict, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` views of one HU slice as a config's ``data`` section makes them (its intensity
    mapping, then its views, the first channel), back in 0..1 (the normalisation undone).
    Each view maps the slice again, so random windows are drawn per view as in training."""
    specs = [ViewSpec.of(s) for s in data.get("views") or [{}]]
    intensity = HUToIntensity(**(data.get("intensity") or {}))
    views = MultiView(specs)
    undo = [(s.mean[0], s.std[0]) for s in specs for _ in range(s.count)]
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        out = []
        while len(out) < count:
            image = intensity(torch.from_numpy(slice_hu.astype(np.float32))[None])
            for view, (mean, std) in zip(views(image), undo):
                out.append((view[0] * std + mean).numpy())
        return out[:count]
    finally:
        torch.set_rng_state(generator_state)


def save_views_picture(slice_hu: np.ndarray, rows: dict[str, dict], path: str | Path, *, count: int = 6,
                       seed: int = 0, title: str = "") -> Path:
    """A PNG: for each named config ``data`` section in ``rows``, the slice (lung window) and
    ``count`` of its views, drawn with the same seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no configs to draw views of")
    level, width = WINDOWS[SHOWN_WINDOW]
    fig, axes = plt.subplots(len(rows), count + 1, figsize=(1.3 * (count + 1), 1.45 * len(rows) + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (name, data) in enumerate(rows.items()):
        axes[r, 0].imshow(slice_hu, cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        axes[r, 0].set_ylabel(name, fontsize=7)
        for c, view in enumerate(draw_views(slice_hu, data, count, seed), start=1):
            axes[r, c].imshow(view, cmap="gray", vmin=0.0, vmax=1.0)
    axes[0, 0].set_title(f"slice ({SHOWN_WINDOW} window)", fontsize=7)
    for c in range(1, count + 1):
        axes[0, c].set_title(f"view {c}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    return save_figure(fig, path, dpi=110)
