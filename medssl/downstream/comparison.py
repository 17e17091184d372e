"""What a sweep's results say: checkpoints labelled, scores summarised over seeds, differences
to a baseline paired by seed, and the sentences a reader wants first (verdicts, labels saved).

Runs with the same task, mode, fraction and seed trained on the same labelled subset, so two
checkpoints' scores are compared pair by pair (:mod:`.paired`); a seed one side lacks is left
out and counted."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from .paired import paired_difference
from .results import KEY, ResultsError
from .scores import HEADLINE, REPORTED, SEGMENTATION_METRICS, family_metrics

RANDOM = "random"
GROUP = ["task", "mode"]
TOLERANCE = 1e-9  # means computed from the same numbers in another order differ by rounding
MIN_SEEDS, MIN_TEST = 3, 30  # below either, a "labels saved" claim is too few to tell
MIN_TEST_PATIENTS = 10  # the same for a segmentation task, scored per test patient


def label_checkpoints(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with a ``label`` column: the method's name, or ``method (file stem)`` (the
    whole path when stems clash) where one method has several checkpoints."""
    labels = {}
    for method, part in results.groupby("method"):
        checkpoints = sorted(part.checkpoint.astype(str).unique())
        stems = [Path(c).stem for c in checkpoints]
        for checkpoint, stem in zip(checkpoints, stems):
            name = stem if stems.count(stem) == 1 else checkpoint
            labels[method, checkpoint] = method if len(checkpoints) == 1 else f"{method} ({name})"
    keys = zip(results.method, results.checkpoint.astype(str))
    return results.assign(label=[labels[key] for key in keys])


def drop_repeats(results: pd.DataFrame, source) -> pd.DataFrame:
    """One row per run: a run found twice (results files pasted together) keeps its last row."""
    repeated = results.duplicated(KEY, keep="last")
    if repeated.any():
        count = int(repeated.sum())
        warnings.warn(f"{source}: {count} {'run appears' if count == 1 else 'runs appear'} more than once; "
                      "the last row of each is kept.", stacklevel=2)
    return results[~repeated]


def resolve_baseline(results: pd.DataFrame, baseline: str | None, source) -> str | None:
    """The label to compare with: ``baseline`` (a label, method or checkpoint as written in
    results.csv), by default random init when the sweep ran it (else None: no comparison)."""
    labels = sorted(results.label.unique())
    if baseline is None:
        return RANDOM if RANDOM in labels else None
    if baseline in labels:
        return baseline
    by_checkpoint = results[results.checkpoint.astype(str) == baseline].label.unique()
    if len(by_checkpoint) == 1:
        return by_checkpoint[0]
    several = [label for label in labels if label.startswith(f"{baseline} (")]
    hint = f"method {baseline!r} has several checkpoints: name one of {several}" if several else \
        f"its labels are {labels}"
    raise ResultsError(f"{source}: no checkpoint labelled {baseline!r} to compare with; {hint}.")


def display(label: str) -> str:
    return "random init" if label == RANDOM else label


def percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def t_interval(mean, std, count, confidence: float = 0.95):
    """Student-t interval of a mean over ``count`` seeds (NaN with one seed)."""
    count = np.asarray(count, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = student_t.ppf((1 + confidence) / 2, count - 1) * std / np.sqrt(count)
    return mean - half, mean + half


def test_images(confusion) -> float:
    """The test-set size of a run: the sum of its confusion matrix (NaN if none)."""
    try:
        return float(np.asarray(json.loads(confusion)).sum())
    except (TypeError, ValueError):
        return float("nan")


def is_segmentation(results: pd.DataFrame) -> bool:
    """Rows of a segmentation task (they hold Dice scores)."""
    return "dice" in results and results["dice"].notna().any()


def metrics_of(results: pd.DataFrame) -> tuple[str, ...]:
    """The metrics the report compares for these rows (one task and mode)."""
    return family_metrics(is_segmentation(results))


def summarise(results: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per task x mode x label x fraction: each metric's mean, std and t interval over seeds
    (``<metric>_mean``, ``_std``, ``_low``, ``_high``; the interval kept within the metric's
    range, 0..1), ``runs``, ``n_train`` and ``n_test``."""
    counted = results["confusion"].map(test_images) if "confusion" in results else float("nan")
    results = results.assign(n_test=results["n_test"].fillna(counted) if "n_test" in results else counted)
    grouped = results.groupby([*GROUP, "label", "method", "fraction"])
    table = grouped.size().rename("runs").to_frame()
    table["n_train"] = grouped["n_train"].mean()
    table["n_test"] = grouped["n_test"].mean()
    for metric in [*REPORTED, "hd95"]:
        if metric not in results:
            continue
        stats = grouped[metric].agg(["mean", "std", "count"])
        low, high = t_interval(stats["mean"], stats["std"], stats["count"], confidence)
        top = np.inf if metric == "hd95" else 1.0  # a distance in pixels
        table[f"{metric}_mean"], table[f"{metric}_std"] = stats["mean"], stats["std"]
        table[f"{metric}_low"], table[f"{metric}_high"] = np.clip(low, 0.0, top), np.clip(high, 0.0, top)
    return table.reset_index()


DIFFERENCE_COLUMNS = [*GROUP, "label", "method", "fraction", "n_train", "metric", "baseline", "mean", "low", "high",
                      "pairs", "left_out", "verdict"]


def differences(results: pd.DataFrame, baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per task x mode x label x fraction x metric: the mean of ``label - baseline`` over the
    seeds both ran (``pairs``), its interval and verdict; ``left_out`` counts the runs of
    either side without a partner (or with a missing score)."""
    reference = results[results.label == baseline]
    rows = []
    for (task, mode, label, method, fraction), runs in results[results.label != baseline].groupby(
            [*GROUP, "label", "method", "fraction"]):
        base = reference[(reference.task == task) & (reference["mode"] == mode) & (reference.fraction == fraction)]
        for metric in metrics_of(runs):
            pairs = runs[["seed", metric]].merge(base[["seed", metric]], on="seed", suffixes=("", "_base")).dropna()
            found = paired_difference(pairs[metric], pairs[f"{metric}_base"], confidence)
            rows.append({"task": task, "mode": mode, "label": label, "method": method, "fraction": fraction,
                         "n_train": runs.n_train.mean(), "metric": metric, "baseline": baseline,
                         "mean": found.mean, "low": max(found.low, -1.0), "high": min(found.high, 1.0),
                         "pairs": found.n,
                         "left_out": len(runs) + len(base) - 2 * found.n, "verdict": found.verdict})
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


PHRASES = {  # verdict: (first in the sentence, later in it)
    "better": ("beats {base} {where}", "beats {base} {where}"),
    "worse": ("is worse than {base} {where}", "worse {where}"),
    "no difference": ("shows no difference from {base} {where}", "no difference {where}"),
    "too few pairs": ("has too few paired seeds to compare with {base} {where}", "too few paired seeds {where}"),
}


def where(fractions: list[float], every: list[float], verdict: str) -> str:
    """'at any fraction'; 'from 25 % up', 'up to 10 %' (three fractions or more at the top or
    bottom); else a list: 'at 1 % and 5 %' (and 'at 15 %' where the sweep ran one fraction)."""
    if fractions == every and len(every) > 1:
        return "at any fraction" if verdict == "no difference" else "at every fraction"
    if len(fractions) > 2 and fractions == every[-len(fractions):]:
        return f"from {percent(fractions[0])} up"
    if len(fractions) > 2 and fractions == every[:len(fractions)]:
        return f"up to {percent(fractions[-1])}"
    names = [percent(f) for f in fractions]
    return "at " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])


def verdict_line(label: str, verdicts: pd.Series, baseline: str) -> str:
    """One sentence from ``verdicts`` (indexed by fraction), fractions of one verdict grouped,
    e.g. 'spark beats random init at 1 % and 5 %; no difference from 25 % up'."""
    verdicts = verdicts.sort_index()
    every = list(verdicts.index)
    order = list(dict.fromkeys(verdicts))  # verdicts in the order of their smallest fraction
    parts = []
    for verdict in order:
        phrase = PHRASES[verdict][0 if not parts else 1]
        fractions = list(verdicts.index[verdicts == verdict])
        parts.append(phrase.format(base=display(baseline), where=where(fractions, every, verdict)))
    return f"{display(label)} " + "; ".join(parts)


def labels_saved_line(summary: pd.DataFrame, label: str, baseline: str, metric: str,
                      reference_fraction: float | None = None) -> str:
    """In one task x mode: the smallest fraction at which ``label``'s mean reaches the baseline's
    mean at ``reference_fraction`` (default: the baseline's largest), and the labels this saves."""
    base = summary[summary.label == baseline].set_index("fraction").sort_index()
    own = summary[summary.label == label].set_index("fraction").sort_index()
    if reference_fraction is None:
        reference = base.index.max()
    else:
        matches = [f for f in base.index if np.isclose(f, reference_fraction)]
        if not matches:
            return (f"{display(label)}: {display(baseline)} has no runs at {percent(reference_fraction)} "
                    f"(its fractions: {', '.join(percent(f) for f in base.index)})")
        reference = matches[0]
    target, n_reference = base.loc[reference, f"{metric}_mean"], round(base.loc[reference, "n_train"])
    goal = f"{display(baseline)}'s {metric} at {percent(reference)} (n={n_reference}, {target:.3f})"
    reached = own[own[f"{metric}_mean"] >= target - TOLERANCE]
    if reached.empty:
        return f"{display(label)} does not reach {goal}"
    fraction, n_train = reached.index[0], round(reached.n_train.iloc[0])
    seeds = int(min(reached.runs.iloc[0], base.loc[reference, "runs"]))
    n_test = min(reached.n_test.iloc[0], base.loc[reference, "n_test"]) if "n_test" in own else float("nan")
    unit, least = ("test patients", MIN_TEST_PATIENTS) if metric in SEGMENTATION_METRICS else ("test images", MIN_TEST)
    if seeds < MIN_SEEDS or not n_test >= least:
        tested = "an unknown number of" if np.isnan(n_test) else f"{n_test:.0f}"
        return (f"{display(label)} vs {goal}: too few to tell ({seeds} seeds, {tested} {unit}; a claim "
                f"of labels saved needs {MIN_SEEDS} seeds and {least} {unit})")
    if fraction == reference and not (own.index < reference).any():
        return (f"{display(label)} reaches {goal}; no smaller fraction ran, so the labels it would save "
                f"are not measured")
    if fraction == reference:
        return f"{display(label)} reaches {goal} only at that fraction: no labels saved"
    if fraction > reference:
        return f"{display(label)} reaches {goal} only with more labels: {percent(fraction)} (n={n_train})"
    saved = 1 - n_train / n_reference
    return (f"{display(label)} reaches {goal} with {percent(fraction)} of the labels (n={n_train}): "
            f"{saved * 100:.0f} % of the labels saved")


def findings(summary: pd.DataFrame, diffs: pd.DataFrame, baseline: str, metric: str,
             reference_fraction: float | None = None) -> list[str]:
    """Per task x mode and label: its verdict line and its labels-saved line, ``metric`` only."""
    ran = sorted(summary[summary.label == baseline].fraction.unique())
    if reference_fraction is not None and not np.isclose(ran, reference_fraction).any():
        raise ResultsError(f"--reference-fraction {reference_fraction:g}: {display(baseline)} has no runs at "
                           f"{percent(reference_fraction)} in any task (its fractions: {', '.join(map(percent, ran))})")
    lines = []
    for (task, mode), part in summary.groupby(GROUP):
        if baseline not in set(part.label):
            lines.append(f"{task}, {mode}: no {display(baseline)} runs to compare with")
            continue
        score = metric if f"{metric}_mean" in part and part[f"{metric}_mean"].notna().any() else \
            HEADLINE["segmentation" if "dice_mean" in part and part["dice_mean"].notna().any() else "classification"]
        own = diffs[(diffs.task == task) & (diffs["mode"] == mode) & (diffs.metric == score)]
        for label in sorted(set(part.label) - {baseline}):
            verdicts = own[own.label == label].set_index("fraction").verdict
            named = "" if score == metric else f" ({score})"
            lines.append(f"{task}, {mode}{named}: {verdict_line(label, verdicts, baseline)}")
            saved = labels_saved_line(part, label, baseline, score, reference_fraction)
            lines.append(f"{task}, {mode}{named}: {saved}")
    return lines
