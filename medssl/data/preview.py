"""Pictures of a slice store: a grid of slices through a CT window, for people to look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .intensity import WINDOWS


def save_store_preview(store, path: str | Path, *, count: int = 16, window: str = "lung",
                       seed: int = 0) -> Path:
    """Save a PNG grid of ``count`` evenly spread slices, titled by patient and position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(count, len(store))
    picks = np.linspace(0, len(store) - 1, n).round().astype(int) if n else []
    cols = int(np.ceil(np.sqrt(n))) or 1
    rows = int(np.ceil(n / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    level, width = WINDOWS[window] if store.units == "HU" else (None, None)
    manifest = store.manifest
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        image = store[i]
        if level is None:
            ax.imshow(image, cmap="gray")
        else:
            ax.imshow(image, cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        row = manifest.iloc[i]
        ax.set_title(f"{row.patient_id}\n#{int(row.slice_index)}", fontsize=7)
    units = f"{window} window (L {level}, W {width})" if level is not None else "raw values"
    fig.suptitle(f"{Path(store.path).name}: {len(store)} slices, {store.height}x{store.width}, {units}",
                 fontsize=9)
    return save_figure(fig, path, dpi=90)


def save_figure(fig, path: str | Path, *, dpi: int) -> Path:
    """Lay a pyplot figure out, write it as ``path`` (its folder made) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
