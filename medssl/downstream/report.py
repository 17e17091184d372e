"""From results.csv to the answer to "does pre-training help?": verdict and labels-saved lines,
tables of mean +- std over seeds and of paired differences to a baseline, plots, CSVs.

Incomplete rows (a sweep killed while writing one) are named in a warning and left out."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .comparison import (
    GROUP,
    differences,
    display,
    drop_repeats,
    findings,
    is_segmentation,
    label_checkpoints,
    metrics_of,
    percent,
    resolve_baseline,
    summarise,
)
from .report_plots import colours, plot_confusions, plot_predictions, plot_scores
from .results import ResultsError, read_sweep, writing
from .scores import REPORTED


@dataclass
class Report:
    """A sweep's results read once, with everything the files show."""

    source: Path
    results: pd.DataFrame  # the runs, with a ``label`` per checkpoint
    baseline: str | None  # the label compared with; None: the sweep has no random init and none was named
    metric: str  # the score the verdicts and labels-saved lines use
    summary: pd.DataFrame
    differences: pd.DataFrame
    findings: list[str]
    confidence: float = 0.95

    def headline(self) -> str:
        """The verdicts' score: ``metric``, Dice for segmentation tasks."""
        segmentation = [is_segmentation(part) for _, part in self.results.groupby(GROUP)]
        if all(segmentation):
            return "dice"
        return f"{self.metric}; dice for segmentation" if any(segmentation) else self.metric

    def group_name(self, task: str, mode: str) -> str:
        """The task's name, with its mode where one results file holds several modes of it."""
        modes = self.results[self.results.task == task]["mode"].unique()
        return task if len(modes) == 1 else f"{task}_{mode}"

    def markdown(self) -> str:
        lines = ["# Downstream results", ""]
        if self.baseline is None:
            lines += [f"No baseline: {self.source.name} has no random-init runs; name one with `--baseline` "
                      f"(labels: {', '.join(sorted(self.results.label.unique()))}).", ""]
        else:
            lines += [f"## Does pre-training help? ({self.headline()}, compared with {display(self.baseline)})", "",
                      *[f"- {line}" for line in self.findings], "",
                      f"Verdicts come from the {self.confidence * 100:g} % interval of the difference to "
                      f"{display(self.baseline)}, paired by seed (the same labelled subset): 'beats' when the "
                      "whole interval is above zero, 'worse' when below, 'no difference' when it holds zero. "
                      "See docs/reading-the-report.md.", ""]
        for (task, mode), part in self.summary.groupby(GROUP):
            name = self.group_name(task, mode)
            runs = self.results[(self.results.task == task) & (self.results["mode"] == mode)]
            segmentation = is_segmentation(runs)
            lines += [f"## {task}, {mode}", "", f"![{name}]({name}_metrics.png)", ""]
            if segmentation:
                lines += ["Fractions are fractions of the training patients; scores are per patient (mean over the "
                          "classes other than the background), hd95 in pixels (lower is better).",
                          "", f"![{name} predictions]({name}_predictions.png)", ""]
            fractions = sorted(part.fraction.unique(), reverse=True)
            header = ["| label | " + " | ".join(_sizes(part[part.fraction == f], f, segmentation) for f in fractions)
                      + " |", "|---|" + "---:|" * len(fractions)]
            labels = sorted(part.label.unique(), key=lambda label: (label != self.baseline, label))
            for metric in [*metrics_of(runs), *(["hd95"] if segmentation else [])]:
                lines += [f"### {metric}: mean +- std over seeds", "", *header]
                for label in labels:
                    rows = part[part.label == label].set_index("fraction")
                    lines.append(f"| {display(label)} | " + " | ".join(
                        _mean_std(rows.loc[f], metric) if f in rows.index else "" for f in fractions) + " |")
                lines.append("")
                if self.baseline in labels and len(labels) > 1 and metric in REPORTED:
                    own = self.differences[(self.differences.task == task) & (self.differences["mode"] == mode)
                                           & (self.differences.metric == metric)]
                    lines += [f"### {metric}: difference to {display(self.baseline)} (paired by seed, "
                              f"{self.confidence * 100:g} % interval; bold: the interval excludes 0)", "", *header]
                    for label in labels[1:]:
                        rows = own[own.label == label].set_index("fraction")
                        lines.append(f"| {display(label)} | " + " | ".join(
                            _difference(rows.loc[f]) if f in rows.index else "" for f in fractions) + " |")
                    lines.append("")
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """results.md, summary.csv, differences.csv and per task (x mode) the metrics and confusion
        plots; {name: path}."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"table": out / "results.md", "summary": out / "summary.csv"}
        with writing(paths["summary"]):
            self.summary.to_csv(paths["summary"], index=False)
        if self.baseline is not None:
            paths["differences"] = out / "differences.csv"
            with writing(paths["differences"]):
                self.differences.to_csv(paths["differences"], index=False)
        with writing(paths["table"]):
            paths["table"].write_text(self.markdown())
        palette = colours(self.results.label.unique(), self.baseline)
        for (task, mode), part in self.summary.groupby(GROUP):
            name = self.group_name(task, mode)
            diffs = self.differences[(self.differences.task == task) & (self.differences["mode"] == mode)]
            runs = self.results[(self.results.task == task) & (self.results["mode"] == mode)]
            paths[f"plot_{name}"] = plot_scores(part, diffs if self.baseline in set(part.label) else None,
                                                self.baseline, palette, f"{task}, {mode}", out / f"{name}_metrics.png",
                                                metrics_of(runs), "training patients" if is_segmentation(runs)
                                                else "training images")
            runs = self.results[(self.results.task == task) & (self.results["mode"] == mode)]
            paths[f"confusion_{name}"] = plot_confusions(runs, palette, self.baseline, out / f"{name}_confusion.png")
            if is_segmentation(runs):
                found = plot_predictions(runs, self.source.parent / task / "predictions", self.baseline,
                                         out / f"{name}_predictions.png")
                if found is not None:
                    paths[f"predictions_{name}"] = found
        return paths


def _sizes(part: pd.DataFrame, fraction: float, segmentation: bool = False) -> str:
    """A column's heading: the fraction, its training images and the test images every figure
    under it was scored on."""
    tested = part.n_test.dropna()
    if tested.empty:
        test = "test size unknown"
    elif tested.min() == tested.max():
        test = f"{tested.iloc[0]:.0f} test"
    else:
        test = f"{tested.min():.0f}-{tested.max():.0f} test"
    if segmentation:
        test = test.replace("test", "test patients")
    return f"{percent(fraction)} ({round(part.n_train.mean())} {'patients' if segmentation else 'train'}, {test})"


def _mean_std(row: pd.Series, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return f"{mean:.3f} (1 seed)" if row["runs"] == 1 or math.isnan(std) else f"{mean:.3f} +- {std:.3f}"


def _difference(row: pd.Series) -> str:
    if row["pairs"] < 2:
        text = "n/a" if row["pairs"] == 0 else f"{row['mean']:+.3f}"
    else:
        text = f"{row['mean']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"
        if row["verdict"] in ("better", "worse"):
            text = f"**{text}**"
    left_out = f", {row['left_out']} left out" if row["left_out"] else ""
    return f"{text} (n={row['pairs']}{left_out})"


def build_report(results_csv: str | Path, baseline: str | None = None, metric: str = "accuracy",
                 reference_fraction: float | None = None, confidence: float = 0.95) -> Report:
    """Read ``results_csv`` and compare every checkpoint with ``baseline`` (a label, method or
    checkpoint; default random init), pairing runs by task, mode, fraction and seed."""
    if metric not in REPORTED:
        raise ValueError(f"unknown metric {metric!r}; the report's metrics: {', '.join(REPORTED)}")
    source = Path(results_csv)
    results = read_sweep(source)
    if results.empty:
        raise ResultsError(f"{source}: no finished runs to report")
    results = label_checkpoints(drop_repeats(results, source))
    chosen = resolve_baseline(results, baseline, source)
    summary = summarise(results, confidence)
    if chosen is None:
        return Report(source, results, None, metric, summary, differences(results.iloc[:0], ""), [], confidence)
    diffs = differences(results, chosen, confidence)
    try:
        lines = findings(summary, diffs, chosen, metric, reference_fraction)
    except ResultsError as err:
        raise ResultsError(f"{source}: {err}") from None
    return Report(source, results, chosen, metric, summary, diffs, lines, confidence)


def write_report(results_csv: str | Path, out_dir: str | Path, **options) -> dict[str, Path]:
    """:func:`build_report` with ``options``, written to ``out_dir``; {name: path}."""
    return build_report(results_csv, **options).write(out_dir)
