"""From results.csv to a markdown table (mean +- std over seeds) and plots like the study's.

Incomplete rows (a sweep killed while writing one) are named in a warning and left out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .results import ResultsError, read_results, writing
from .scores import METRICS


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per task x method x fraction (columns metric_mean, metric_std)."""
    grouped = results.groupby(["task", "method", "fraction"])
    table = grouped[list(METRICS)].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table["runs"] = grouped.size()
    table["n_train"] = grouped["n_train"].mean()
    return table.reset_index()


def markdown(summary: pd.DataFrame) -> str:
    lines = ["# Downstream results (mean +- std over seeds)", ""]
    for task, part in summary.groupby("task"):
        fractions = sorted(part["fraction"].unique(), reverse=True)
        for metric in METRICS:
            lines += [f"## {task}: {metric}", "",
                      "| method | " + " | ".join(f"{f:g} (n={int(part[part.fraction == f].n_train.iloc[0])})"
                                                  for f in fractions) + " |",
                      "|---|" + "---:|" * len(fractions)]
            for method, rows in part.groupby("method"):
                cells = []
                for f in fractions:
                    row = rows[rows.fraction == f]
                    if row.empty:
                        cells.append("")
                    else:
                        std = row[f"{metric}_std"].iloc[0]
                        cells.append(f"{row[f'{metric}_mean'].iloc[0]:.3f} +- {0.0 if np.isnan(std) else std:.3f}")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def write_report(results_csv: str | Path, out_dir: str | Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = read_results(results_csv)
    if results.empty:
        raise ResultsError(f"{results_csv}: no finished runs to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results)
    paths = {"table": out / "results.md", "summary": out / "summary.csv"}
    with writing(paths["table"]):
        paths["table"].write_text(markdown(summary))
    with writing(paths["summary"]):
        summary.to_csv(paths["summary"], index=False)
    for task, part in summary.groupby("task"):
        fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6), squeeze=False)
        for ax, metric in zip(axes[0], METRICS):
            for method, rows in part.groupby("method"):
                rows = rows.sort_values("n_train")
                mean, std = rows[f"{metric}_mean"], rows[f"{metric}_std"].fillna(0)
                ax.plot(rows["n_train"], mean, marker="o", label=method)
                ax.fill_between(rows["n_train"], mean - std, mean + std, alpha=0.2)
            ax.set_xscale("log")
            ax.set_xlabel("training images")
            ax.set_title(metric)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{task}: fine-tuning vs training-set size (mean +- std over seeds)")
        fig.tight_layout()
        paths[f"plot_{task}"] = out / f"{task}_metrics.png"
        with writing(paths[f"plot_{task}"]):
            fig.savefig(paths[f"plot_{task}"], dpi=90)
        plt.close(fig)
        paths[f"confusion_{task}"] = _confusions(results[results.task == task], out / f"{task}_confusion.png", plt)
    return paths


def _confusions(runs: pd.DataFrame, path: Path, plt) -> Path:
    """Confusion matrices summed over seeds, at the largest training fraction, per method."""
    top = runs[runs.fraction == runs.fraction.max()]
    methods = sorted(top.method.unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods):
        matrix = np.sum([np.asarray(json.loads(c)) for c in top[top.method == method].confusion], axis=0)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    with writing(path):
        fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
