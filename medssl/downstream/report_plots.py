"""The report's figures: scores and paired differences against training-set size, confusion
matrices. One colour per checkpoint label for the whole report, the baseline in black."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .comparison import display, percent
from .results import writing
from .scores import METRICS

BASELINE_COLOUR = "black"


def colours(labels, baseline: str | None) -> dict[str, tuple]:
    """A fixed colour per label (sorted), never grey; the baseline black."""
    tab10, tab20 = matplotlib.colormaps["tab10"].colors, matplotlib.colormaps["tab20"].colors
    palette = [c for i, c in enumerate(tab10) if i != 7] + [c for i, c in enumerate(tab20) if i % 2 and i != 15]
    others = sorted(set(labels) - {baseline})
    mapping = {label: palette[i % len(palette)] for i, label in enumerate(others)}
    if baseline is not None:
        mapping[baseline] = matplotlib.colors.to_rgb(BASELINE_COLOUR)
    return mapping


def _x_axis(ax) -> None:
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.grid(alpha=0.3)


def plot_scores(summary: pd.DataFrame, diffs: pd.DataFrame | None, baseline: str | None, palette: dict,
                title: str, path: Path) -> Path:
    """Each metric against training images (mean and 95 % t band over seeds); below, the paired
    difference to the baseline with its band and the zero line."""
    rows = 1 if diffs is None or diffs.empty else 2
    fig = Figure(figsize=(4.2 * len(METRICS), 3.6 * rows))
    axes = fig.subplots(rows, len(METRICS), squeeze=False)
    order = sorted(summary.label.unique(), key=lambda label: (label != baseline, label))
    for ax, metric in zip(axes[0], METRICS):
        for label in order:
            part = summary[summary.label == label].sort_values("n_train")
            ax.plot(part.n_train, part[f"{metric}_mean"], marker="o", color=palette[label], label=display(label),
                    zorder=3 if label == baseline else 2)  # the baseline on top
            ax.fill_between(part.n_train, part[f"{metric}_low"], part[f"{metric}_high"], color=palette[label],
                            alpha=0.15)
        _x_axis(ax)
        ax.set_title(metric)
    axes[0][0].legend(fontsize=8)
    if rows == 2:
        for ax, metric in zip(axes[1], METRICS):
            ax.axhline(0, color=palette[baseline], linestyle="--", linewidth=1)
            for label in order[1:]:
                part = diffs[(diffs.label == label) & (diffs.metric == metric)].sort_values("n_train")
                ax.plot(part.n_train, part["mean"], marker="o", color=palette[label], label=display(label))
                ax.fill_between(part.n_train, part["low"], part["high"], color=palette[label], alpha=0.15)
            _x_axis(ax)
            ax.set_title(f"{metric}: difference to {display(baseline)}", fontsize=9)
    fig.suptitle(f"{title}: mean and 95 % interval over seeds" + ("; differences paired by seed" if rows == 2 else ""))
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=90)
    return path


def plot_confusions(runs: pd.DataFrame, palette: dict, baseline: str | None, path: Path) -> Path:
    """Confusion matrices summed over seeds at the largest training fraction, one per label."""
    top = runs[runs.fraction == runs.fraction.max()]
    labels = sorted(top.label.unique(), key=lambda label: (label != baseline, label))
    fig = Figure(figsize=(3.2 * len(labels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(labels), squeeze=False)
    for ax, label in zip(axes[0], labels):
        matrix = np.sum([np.asarray(json.loads(c)) for c in top[top.label == label].confusion], axis=0)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                    color="white" if v > matrix.max() / 2 else "black")
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
        ax.set_title(display(label), fontsize=9, color=palette[label])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.suptitle(f"confusion matrices summed over seeds, at {percent(top.fraction.max())} of the training set",
                 fontsize=9)
    with writing(path):
        fig.savefig(path, dpi=90)
    return path
