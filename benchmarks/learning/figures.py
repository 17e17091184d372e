"""The learning benchmark's pictures: each method's training loss, and each score's difference to
random init against labels per class (``<prefix>-loss.png``, ``<prefix>-difference.png``)."""
from __future__ import annotations

from pathlib import Path

from benchmarks.learning import ALL, SEGMENTATION
from benchmarks.learning.comparison import protocols_of, tasks_of


def pyplot():
    """matplotlib's pyplot, drawing to files only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(count: int, most_columns: int, size: tuple[float, float]):
    """A matplotlib figure of ``count`` panels in rows of at most ``most_columns`` (each ``size``
    inches), the spare ones hidden; (figure, axes as a 2-D array)."""
    columns = min(most_columns, count)
    rows = -(-count // columns)
    fig, axes = pyplot().subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    pyplot().close(fig)
    return path


def plots(report: dict, prefix: Path) -> list[Path]:
    methods = list(report["comparison"])
    fig, axes = panels(len(methods), 4, (3.6, 3))
    for ax, method in zip(axes.flat, methods):
        steps, loss = zip(*report["pretraining"][method]["loss"]) if report["pretraining"][method]["loss"] else ((), ())
        ax.plot(steps, loss)
        ax.set_title(method)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("training loss")
    paths = [save(fig, prefix.with_name(prefix.name + "-loss.png"))]
    protocols, tasks = protocols_of(report), tasks_of(report)
    fig, axes = pyplot().subplots(len(protocols), len(tasks), figsize=(4 * len(tasks), 3.2 * len(protocols)),
                                  squeeze=False)
    for row, probe in zip(axes, protocols):
        for ax, task in zip(row, tasks):
            ticks = set()
            for method, comp in report["comparison"].items():
                rs = sorted((r for r in comp["rows"] if (r["task"], r["probe"]) == (task, probe)
                             and r["labels"] != ALL), key=lambda r: r["labels"])
                if not rs:
                    continue
                labels = [r["labels"] for r in rs]
                ticks.update(labels)
                ax.plot(labels, [r["difference"] for r in rs], marker="o", label=method)
                ax.fill_between(labels, [r["low"] for r in rs], [r["high"] for r in rs], alpha=0.2)
            ax.axhline(0, color="grey", lw=1)
            ax.set_xscale("log")
            ax.set_xticks(sorted(ticks), [str(n) for n in sorted(ticks)])
            ax.minorticks_off()  # a log axis labels its minor ticks too ("6 x 10^0")
            ax.set_title(f"{task}, {probe}" + (" (Dice)" if task == SEGMENTATION else ""))
            ax.set_xlabel("training patients" if task == SEGMENTATION else "labels per class")
            if not ticks:
                ax.set_visible(False)  # segmentation is fine-tuned only
            ax.grid(alpha=0.3)
        next((ax for ax in row if ax.get_visible()), row[0]).set_ylabel("accuracy - random init")
    shown = [ax for ax in axes.flat if ax.get_visible() and ax.get_legend_handles_labels()[0]]
    if shown:  # the first panel drawn: with fewer fine-tuned tasks, the top left one may be hidden
        shown[0].legend(fontsize=8)
    return paths + [save(fig, prefix.with_name(prefix.name + "-difference.png"))]
