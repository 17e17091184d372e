"""The report's figures: scores and paired differences against training-set size, confusion
matrices. One colour per checkpoint label for the whole report, the baseline in black."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.patches
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from .comparison import display, percent
from .results import class_names, examples_path, writing
from .scores import METRICS

BASELINE_COLOUR = "black"
NAME_CHARS = 24  # a longer class name is cut short (with an ellipsis) on the confusion axes
TICK_CHAR = 0.06  # inches per character of a 7 pt tick label, to size the confusion figure
MIN_TICK_RATIO = 1.35  # training-set sizes closer than this share one label on the log axis


def colours(labels, baseline: str | None) -> dict[str, tuple]:
    """A fixed colour per label (sorted), never grey; the baseline black."""
    tab10, tab20 = matplotlib.colormaps["tab10"].colors, matplotlib.colormaps["tab20"].colors
    palette = [c for i, c in enumerate(tab10) if i != 7] + [c for i, c in enumerate(tab20) if i % 2 and i != 15]
    others = sorted(set(labels) - {baseline})
    mapping = {label: palette[i % len(palette)] for i, label in enumerate(others)}
    if baseline is not None:
        mapping[baseline] = matplotlib.colors.to_rgb(BASELINE_COLOUR)
    return mapping


def _x_axis(ax, sizes, unit: str = "training images") -> None:
    """A log axis labelled at the training-set sizes, one label where two would touch."""
    ax.set_xscale("log")
    kept = []
    for n in sorted({int(n) for n in sizes}):
        if not kept or n / kept[-1] >= MIN_TICK_RATIO:
            kept.append(n)
    ax.xaxis.set_major_locator(ticker.FixedLocator(kept))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([str(n) for n in kept]))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(unit)
    ax.grid(alpha=0.3)


def plot_scores(summary: pd.DataFrame, diffs: pd.DataFrame | None, baseline: str | None, palette: dict,
                title: str, path: Path, metrics=METRICS, unit: str = "training images") -> Path:
    """Each metric against training images (mean and 95 % t band over seeds); below, the paired
    difference to the baseline with its band and the zero line."""
    rows = 1 if diffs is None or diffs.empty else 2
    fig = Figure(figsize=(4.2 * len(metrics), 3.6 * rows))
    axes = fig.subplots(rows, len(metrics), squeeze=False)
    order = sorted(summary.label.unique(), key=lambda label: (label != baseline, label))
    for ax, metric in zip(axes[0], metrics):
        for label in order:
            part = summary[summary.label == label].sort_values("n_train")
            ax.plot(part.n_train, part[f"{metric}_mean"], marker="o", color=palette[label], label=display(label),
                    zorder=3 if label == baseline else 2)  # the baseline on top
            ax.fill_between(part.n_train, part[f"{metric}_low"], part[f"{metric}_high"], color=palette[label],
                            alpha=0.15)
        _x_axis(ax, summary.n_train, unit)
        ax.set_title(metric)
    axes[0][0].legend(fontsize=8)
    if rows == 2:
        for ax, metric in zip(axes[1], metrics):
            ax.axhline(0, color=palette[baseline], linestyle="--", linewidth=1)
            for label in order[1:]:
                part = diffs[(diffs.label == label) & (diffs.metric == metric)].sort_values("n_train")
                ax.plot(part.n_train, part["mean"], marker="o", color=palette[label], label=display(label))
                ax.fill_between(part.n_train, part["low"], part["high"], color=palette[label], alpha=0.15)
            _x_axis(ax, diffs.n_train, unit)
            ax.set_title(f"{metric}: difference to {display(baseline)}", fontsize=9)
    fig.suptitle(f"{title}: mean and 95 % interval over seeds" + ("; differences paired by seed" if rows == 2 else ""))
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=90)
    return path


def plot_confusions(runs: pd.DataFrame, palette: dict, baseline: str | None, path: Path) -> Path:
    """Confusion matrices summed over seeds at the largest training fraction, one per label; the
    axes name the classes (results.csv's ``classes``; their numbers where it has none)."""
    top = runs[runs.fraction == runs.fraction.max()]
    labels = sorted(top.label.unique(), key=lambda label: (label != baseline, label))
    matrices = {label: np.sum([np.asarray(json.loads(c)) for c in top[top.label == label].confusion], axis=0)
                for label in labels}
    count = len(next(iter(matrices.values())))
    names = [n if len(n) <= NAME_CHARS else n[:NAME_CHARS - 1] + "\u2026"
             for n in class_names(top.get("classes", ()), count)]
    longest = max(len(n) for n in names)
    wide = longest > 3  # names, not numbers: x labels slanted
    side = max(3.2, 0.32 * count + 1.2)  # inches per matrix
    left, below = 0.5 + TICK_CHAR * longest, 0.5 + (0.72 * TICK_CHAR * longest if wide else 0.2)
    fig = Figure(figsize=(max(5.5, left + side * len(labels)), side + below + 0.6), layout="compressed")
    axes = fig.subplots(1, len(labels), squeeze=False)
    for k, (ax, label) in enumerate(zip(axes[0], labels)):
        matrix = matrices[label]
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                    color="white" if v > matrix.max() / 2 else "black")
        ax.set_xticks(range(matrix.shape[1]), names[:matrix.shape[1]], fontsize=7,
                      rotation=45 if wide else 0, ha="right" if wide else "center", rotation_mode="anchor")
        ax.set_yticks(range(matrix.shape[0]), names[:matrix.shape[0]], fontsize=7)
        if k:  # the classes are named once, left of the first matrix
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("true")
        ax.set_title(display(label), fontsize=9, color=palette[label])
        ax.set_xlabel("predicted")
    fig.suptitle(f"confusion matrices summed over seeds, at {percent(top.fraction.max())} of the training set",
                 fontsize=9)
    with writing(path):
        fig.savefig(path, dpi=90)
    return path


def plot_predictions(runs: pd.DataFrame, folder: Path, baseline: str | None, path: Path,
                     slices: int = 3) -> Path | None:
    """A few test slices of a segmentation task: the image, its truth, and each label's prediction
    at the smallest training fraction (seed 0, else the lowest seed kept); None without saved
    examples (``<results folder>/<task>/predictions/``)."""
    smallest = runs[runs.fraction == runs.fraction.min()]
    picks = {}
    for label in sorted(smallest.label.unique(), key=lambda label: (label != baseline, label)):
        for seed in sorted(smallest[smallest.label == label].seed):
            ckpt = smallest[smallest.label == label].checkpoint.iloc[0]
            file = examples_path(folder, ckpt, smallest.fraction.min(), seed)
            if file.is_file():
                picks[label] = np.load(file)
                break
    if not picks:
        return None
    first = next(iter(picks.values()))
    classes = [str(c) for c in first["classes"]]
    count = min(slices, len(first["image"]))
    columns = 2 + len(picks)
    cmap = matplotlib.colors.ListedColormap(["none", *matplotlib.colormaps["tab10"].colors[:len(classes) - 1]])
    fig = Figure(figsize=(2.2 * columns, 2.2 * count + 0.9), layout="compressed")
    axes = fig.subplots(count, columns, squeeze=False)
    for row in range(count):
        image = first["image"][row]
        shown = [("image", None), ("truth", first["truth"][row])] + [
            (display(label), data["prediction"][row]) for label, data in picks.items()]
        for ax, (title, mask) in zip(axes[row], shown):
            ax.imshow(image, cmap="gray")
            if mask is not None:
                ax.imshow(np.ma.masked_equal(mask, 0), cmap=cmap, vmin=0, vmax=len(classes) - 1,
                          alpha=0.6, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    handles = [matplotlib.patches.Patch(color=cmap(i), label=name) for i, name in enumerate(classes) if i]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.suptitle(f"test slices at {percent(smallest.fraction.min())} of the training patients (one seed)", fontsize=9)
    with writing(path):
        fig.savefig(path, dpi=90)
    return path
