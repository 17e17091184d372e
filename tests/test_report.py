"""The report on results.csv files with known numbers: means, paired differences and their
intervals against hand computations, verdict and labels-saved lines, unpaired runs left out,
one colour per label in every figure, the command's console output; and medssl.downstream.paired."""
import importlib.util
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medssl.downstream.paired import paired_difference
from medssl.downstream.report import build_report, write_report
from medssl.downstream.results import COLUMNS, ResultsError
from medssl.downstream.scores import METRICS

ROOT = Path(__file__).resolve().parents[1]
T_975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables)
FRACTIONS = (0.01, 0.05, 0.25, 1.0)
N_TRAIN = {0.01: 3, 0.05: 13, 0.25: 63, 1.0: 252}
RANDOM_MEAN = {0.01: 0.40, 0.05: 0.50, 0.25: 0.60, 1.0: 0.80}
SEED_OFFSET = (-0.01, 0.0, 0.01)
NO_CHANGE = (-0.05, 0.0, 0.05)  # mean 0, interval about [-0.12, 0.12]
GAIN, SMALL_LOSS = (0.10, 0.11, 0.12), (-0.06, -0.01, 0.04)
# each checkpoint's score minus random init's, per fraction and seed
DIFFS = {"spark": {0.01: GAIN, 0.05: GAIN, 0.25: (0.20, 0.21, 0.22), 1.0: NO_CHANGE},
         "byol": {0.01: tuple(-d for d in GAIN), 0.05: NO_CHANGE, 0.25: SMALL_LOSS, 1.0: SMALL_LOSS},
         "mocov2": dict.fromkeys(FRACTIONS, NO_CHANGE)}


def run(method="random", score=0.5, fraction=1.0, seed=0, task="organ", mode="finetune", checkpoint=None, **scores):
    """One results.csv row: every metric ``score`` unless named in ``scores``."""
    metrics = {m: scores.get(m, score) for m in METRICS}
    checkpoint = checkpoint or ("random" if method == "random" else f"runs/{method}_backbone.pt")
    return {"task": task, "checkpoint": checkpoint, "mode": mode, "fraction": fraction, "seed": seed,
            "method": method, "n_train": N_TRAIN.get(fraction, round(252 * fraction)), **metrics,
            "recall": metrics["balanced_accuracy"], "epochs": 2, "wall_s": 1.0,
            "confusion": json.dumps([[seed + 20, 4], [2, 14]])}  # 40 test images and more


def write(path, rows):
    pd.DataFrame(rows).reindex(columns=COLUMNS).to_csv(path, index=False)
    return path


def study_rows(task="organ", methods=("spark", "byol", "mocov2")):
    rows = []
    for fraction in FRACTIONS:
        for seed, offset in enumerate(SEED_OFFSET):
            base = RANDOM_MEAN[fraction] + offset
            rows.append(run("random", base, fraction, seed, task))
            rows += [run(m, base + DIFFS[m][fraction][seed], fraction, seed, task) for m in methods]
    return rows


@pytest.fixture
def study(tmp_path):
    return write(tmp_path / "results.csv", study_rows())


def script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "Downstream" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- medssl.downstream.paired -----------------------------------------------------------------
def test_paired_difference_matches_the_hand_computed_t_interval():
    found = paired_difference([0.8, 0.9, 1.0], [0.7, 0.7, 0.7])  # differences 0.1, 0.2, 0.3
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert half == pytest.approx(0.2484, abs=1e-4)
    assert (found.mean, found.low, found.high, found.n) == pytest.approx((0.2, 0.2 - half, 0.2 + half, 3))
    assert found.verdict == "no difference"


def test_paired_difference_verdicts_and_degenerate_cases():
    assert paired_difference([0.8, 0.81, 0.82], [0.5, 0.5, 0.51]).verdict == "better"
    assert paired_difference([0.5, 0.5, 0.51], [0.8, 0.81, 0.82]).verdict == "worse"
    one = paired_difference([0.9], [0.5])
    assert one.mean == pytest.approx(0.4) and math.isnan(one.low) and math.isnan(one.high)
    assert one.verdict == "too few pairs" and not one.enough_pairs
    same = paired_difference([0.8, 0.9, 1.0], [0.7, 0.8, 0.9])  # every pair 0.1 apart: no spread
    assert (same.low, same.mean, same.high) == pytest.approx((0.1, 0.1, 0.1)) and same.verdict == "better"
    assert paired_difference([0.7, 0.8], [0.7, 0.8]).verdict == "no difference"
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([0.8, 0.9], [0.7])
    with pytest.raises(ValueError, match="NaN"):
        paired_difference([0.8, float("nan")], [0.7, 0.7])


# --- tables and differences --------------------------------------------------------------------
def test_mean_std_and_paired_difference_match_a_hand_computation(tmp_path):
    scores = {"random": (0.7, 0.7, 0.7), "spark": (0.8, 0.9, 1.0)}
    path = write(tmp_path / "results.csv", [run(m, s, seed=seed) for m, values in scores.items()
                                            for seed, s in enumerate(values)])
    paths = write_report(path, tmp_path / "report")
    summary = pd.read_csv(paths["summary"]).set_index("label")
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert summary.loc["spark", ["accuracy_mean", "accuracy_std"]].tolist() == pytest.approx([0.9, 0.1])
    # the interval kept within what accuracy can take
    assert summary.loc["spark", ["accuracy_low", "accuracy_high"]].tolist() == pytest.approx([0.9 - half, 1.0])
    diffs = pd.read_csv(paths["differences"]).set_index("metric")
    assert diffs.loc["accuracy", ["mean", "low", "high"]].tolist() == pytest.approx([0.2, 0.2 - half, 0.2 + half])
    assert diffs.loc["accuracy", "pairs"] == 3 and diffs.loc["accuracy", "left_out"] == 0
    text = paths["table"].read_text()
    assert "| spark | 0.900 +- 0.100 |" in text
    assert f"| spark | +0.200 [{0.2 - half:+.3f}, {0.2 + half:+.3f}] (n=3) |" in text


@pytest.mark.slow
def test_unpaired_runs_and_missing_scores_are_left_out_and_counted(tmp_path):
    rows = [run("random", 0.70, seed=s) for s in (0, 1, 2)]
    rows += [run("spark", 0.80, seed=0), run("spark", 0.85, seed=1, auc=float("nan")), run("spark", 0.99, seed=3)]
    paths = write_report(write(tmp_path / "results.csv", rows), tmp_path / "report")
    diffs = pd.read_csv(paths["differences"]).set_index("metric")
    assert diffs.loc["accuracy", ["pairs", "left_out"]].tolist() == [2, 2]  # seeds 2 and 3 have no partner
    assert diffs.loc["accuracy", "mean"] == pytest.approx(0.125)  # (0.10 + 0.15) / 2, seed 3 not in it
    assert diffs.loc["auc", ["pairs", "left_out"]].tolist() == [1, 4]
    assert diffs.loc["auc", "verdict"] == "too few pairs"
    assert "(n=2, 2 left out)" in paths["table"].read_text()


def test_a_run_found_twice_keeps_its_last_row(tmp_path):
    rows = [run("random", 0.7, seed=s) for s in (0, 1)] + [run("spark", 0.1, seed=0)]
    rows += [run("spark", 0.8, seed=0), run("spark", 0.9, seed=1)]  # seed 0 again: a second file pasted on
    with pytest.warns(UserWarning, match=r"results\.csv: 1 run appears more than once"):
        report = build_report(write(tmp_path / "results.csv", rows))
    spark = report.summary.set_index("label").loc["spark"]
    assert (spark.runs, spark.accuracy_mean) == (2, pytest.approx(0.85))


# --- verdicts and labels saved -----------------------------------------------------------------
def test_verdict_lines_for_better_worse_and_no_difference(study):
    lines = build_report(study).findings
    assert "organ, finetune: spark beats random init up to 25 %; no difference at 100 %" in lines
    assert "organ, finetune: byol is worse than random init at 1 %; no difference from 5 % up" in lines
    assert "organ, finetune: mocov2 shows no difference from random init at any fraction" in lines


def test_verdicts_group_fractions_in_words(tmp_path):
    fractions = (0.01, 0.05, 0.25, 0.5, 1.0)
    gain_low = {0.01: GAIN, 0.05: GAIN, 0.25: NO_CHANGE, 0.5: NO_CHANGE, 1.0: NO_CHANGE}
    rows = [run("random", 0.5 + o, f, s) for f in fractions for s, o in enumerate(SEED_OFFSET)]
    rows += [run("spark", 0.5 + o + gain_low[f][s], f, s) for f in fractions for s, o in enumerate(SEED_OFFSET)]
    lines = build_report(write(tmp_path / "results.csv", rows)).findings
    assert lines[0] == "organ, finetune: spark beats random init at 1 % and 5 %; no difference from 25 % up"
    rows = [r for r in rows if r["fraction"] != 0.5]
    lines = build_report(write(tmp_path / "results.csv", rows)).findings
    assert lines[0] == "organ, finetune: spark beats random init at 1 % and 5 %; no difference at 25 % and 100 %"


def test_labels_saved_reached_and_not_reached(study):
    lines = build_report(study).findings
    assert ("organ, finetune: spark reaches random init's accuracy at 100 % (n=252, 0.800) with 25 % of the "
            "labels (n=63): 75 % of the labels saved") in lines
    assert "organ, finetune: byol does not reach random init's accuracy at 100 % (n=252, 0.800)" in lines


def test_a_sweep_of_one_fraction_names_it_and_does_not_claim_labels_saved_or_lost(tmp_path):
    rows = [r for r in study_rows() if r["fraction"] == 0.25 and r["method"] in ("random", "spark")]
    lines = build_report(write(tmp_path / "results.csv", rows)).findings
    assert lines[0] == "organ, finetune: spark beats random init at 25 %"
    assert lines[1] == ("organ, finetune: spark reaches random init's accuracy at 25 % (n=63, 0.600); no smaller "
                        "fraction ran, so the labels it would save are not measured")


def test_labels_saved_needs_seeds_and_test_images(tmp_path):
    few_seeds = [row for row in study_rows() if row["seed"] < 2]
    lines = build_report(write(tmp_path / "results.csv", few_seeds)).findings
    spark = [line for line in lines if line.startswith("organ, finetune: spark vs random init's accuracy at 100 %")]
    assert len(spark) == 1 and spark[0].endswith(
        "too few to tell (2 seeds, 40 test images; a claim of labels saved needs 3 seeds and 30 test images)")
    small_test = [{**row, "confusion": json.dumps([[2, 1], [1, 4]])} for row in study_rows()]
    lines = build_report(write(tmp_path / "small.csv", small_test)).findings
    assert any("too few to tell (3 seeds, 8 test images" in line for line in lines)
    assert not any("labels saved" in line and "too few" not in line for line in lines)


def test_labels_saved_at_a_named_reference_fraction(study):
    lines = build_report(study, reference_fraction=0.25).findings
    saved = round((1 - 13 / 63) * 100)
    assert ("organ, finetune: spark reaches random init's accuracy at 25 % (n=63, 0.600) with 5 % of the "
            f"labels (n=13): {saved} % of the labels saved") in lines
    assert ("organ, finetune: byol reaches random init's accuracy at 25 % (n=63, 0.600) only with more labels: "
            "100 % (n=252)") in lines
    with pytest.raises(ResultsError, match=r"results\.csv.*no runs at 50 %.*its fractions: 1 %, 5 %, 25 %, 100 %"):
        build_report(study, reference_fraction=0.5)


def test_another_baseline_and_several_checkpoints_of_one_method(tmp_path):
    rows = study_rows(methods=("spark",))
    rows += [{**r, "checkpoint": "runs/long/spark_backbone.pt", "accuracy": r["accuracy"] - 0.3}
             for r in rows if r["method"] == "spark"]
    path = write(tmp_path / "results.csv", rows)
    report = build_report(path, baseline="runs/long/spark_backbone.pt")  # a checkpoint as written in results.csv
    assert set(report.results.label) == {"random", "spark (runs/spark_backbone.pt)",
                                         "spark (runs/long/spark_backbone.pt)"}  # same stem: whole paths
    assert report.baseline == "spark (runs/long/spark_backbone.pt)"
    assert ("organ, finetune: spark (runs/spark_backbone.pt) beats spark (runs/long/spark_backbone.pt) "
            "at every fraction") in report.findings
    with pytest.raises(ResultsError, match=r"results\.csv.*'spark' has several checkpoints"):
        build_report(path, baseline="spark")


# --- figures and the command -------------------------------------------------------------------
@pytest.mark.slow
def test_a_label_has_one_colour_in_every_figure(tmp_path, monkeypatch):
    rows = study_rows("organ") + study_rows("covid", methods=("byol", "mocov2"))  # covid lacks spark
    path = write(tmp_path / "results.csv", rows)
    seen = {}  # label -> colours in lines, bands and confusion titles
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        for ax in fig.axes:
            for line in ax.get_lines():
                if not line.get_label().startswith("_"):
                    seen.setdefault(line.get_label(), set()).add(matplotlib.colors.to_hex(line.get_color()))
            if ax.images:  # a confusion matrix, titled by its label
                seen.setdefault(ax.get_title(), set()).add(matplotlib.colors.to_hex(ax.title.get_color()))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    paths = write_report(path, tmp_path / "report")
    assert {"plot_organ", "plot_covid", "confusion_organ", "confusion_covid"} <= set(paths)
    assert set(seen) == {"random init", "spark", "byol", "mocov2"}
    assert all(len(colours) == 1 for colours in seen.values()), seen
    assert seen["random init"] == {"#000000"}
    assert len({next(iter(c)) for c in seen.values()}) == 4  # no two labels share one


@pytest.mark.slow
def test_every_column_names_its_training_and_test_images(study, tmp_path):
    text = write_report(study, tmp_path / "report")["table"].read_text()
    # run() scores seeds 0, 1, 2 on confusions of 40, 41 and 42 test images
    assert "| label | 100 % (252 train, 41 test) | 25 % (63 train, 41 test) | 5 % (13 train, 41 test) | " in text
    rows = [run("random", 0.5, seed=0), {**run("spark", 0.6, seed=0), "confusion": "[[20, 5], [0, 5]]"}]
    text = write_report(write(tmp_path / "mixed.csv", rows), tmp_path / "mixed")["table"].read_text()
    assert "| label | 100 % (252 train, 30-40 test) |" in text  # checkpoints scored on other test sets


def test_the_training_size_axis_labels_do_not_overlap(tmp_path, monkeypatch):
    sizes = {0.02: 10, 0.022: 11, 0.024: 12, 0.08: 40, 0.084: 42, 0.5: 200, 1.0: 400}
    monkeypatch.setitem(globals(), "N_TRAIN", sizes)
    rows = [run(m, 0.5 + 0.01 * seed + (0.05 if m == "spark" else 0), f, seed)
            for f in sizes for seed in range(3) for m in ("random", "spark")]
    boxes = {}
    save = Figure.savefig

    def record(fig, path, *args, **kwargs):
        out = save(fig, path, *args, **kwargs)
        renderer = FigureCanvasAgg(fig).get_renderer()
        boxes[Path(path).name] = [[(t.get_text(), t.get_window_extent(renderer)) for t in ax.get_xticklabels()
                                   if t.get_visible() and t.get_text()] for ax in fig.axes]
        return out

    monkeypatch.setattr(Figure, "savefig", record)
    write_report(write(tmp_path / "results.csv", rows), tmp_path / "report")
    for axis in boxes["organ_metrics.png"]:
        assert [text for text, _ in axis] == ["10", "40", "200", "400"]  # 11, 12 and 42 would touch
        assert all(a.x1 < b.x0 for (_, a), (_, b) in zip(axis, axis[1:])), axis


def confusion_axes(monkeypatch):
    """{figure file name: [axes with a confusion matrix]} of the figures saved from now on."""
    seen = {}
    save = Figure.savefig

    def record(fig, path, *args, **kwargs):
        seen[Path(path).name] = [ax for ax in fig.axes if ax.images]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


def tick_names(ax):
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_confusion_matrices_name_the_classes(tmp_path, monkeypatch):
    names = ["kidney-left", "kidney-right", "spleen"]
    matrix = json.dumps([[3, 1, 0], [1, 2, 1], [0, 0, 4]])
    rows = [{**run(m, 0.7, seed=s), "confusion": matrix, "classes": json.dumps(names)}
            for m in ("random", "spark") for s in (0, 1)]
    rows += [{**run("random", 0.7, seed=2), "confusion": matrix}]  # a run that recorded no names
    seen = confusion_axes(monkeypatch)
    write_report(write(tmp_path / "results.csv", rows), tmp_path / "report")
    first, second = seen["organ_confusion.png"]
    assert tick_names(first) == (names, names)
    assert tick_names(second)[0] == names  # the rows are named once, left of the first matrix
    assert not any(tick.label1.get_visible() for tick in second.yaxis.get_major_ticks())
    assert {t.get_rotation() for t in first.get_xticklabels()} == {45}  # names slanted, readable
    assert first.get_ylabel() == "true" and second.get_xlabel() == "predicted"


def test_a_results_file_without_class_names_reports_numbers(tmp_path, monkeypatch):
    """results.csv files written before the ``classes`` column still report, with class numbers."""
    old_columns = [c for c in COLUMNS if c != "classes"]
    path = tmp_path / "results.csv"
    pd.DataFrame([run(m, 0.7, seed=s) for m in ("random", "spark") for s in (0, 1)]).reindex(
        columns=old_columns).to_csv(path, index=False)
    assert "classes" not in path.read_text().splitlines()[0]
    seen = confusion_axes(monkeypatch)
    report = build_report(path)
    assert (report.results.classes == "").all()
    report.write(tmp_path / "report")
    assert [tick_names(ax) for ax in seen["organ_confusion.png"]][0] == (["0", "1"], ["0", "1"])
    assert {t.get_rotation() for t in seen["organ_confusion.png"][0].get_xticklabels()} == {0}


def test_a_row_with_unreadable_class_names_is_skipped(tmp_path):
    rows = [{**run(m, 0.7, seed=s), "classes": json.dumps(["a", "b"])} for m in ("random", "spark") for s in (0, 1)]
    rows[-1]["classes"] = "[a, b"
    with pytest.warns(UserWarning, match=r"results\.csv: row 5 is incomplete \(classes is not a JSON list"):
        report = build_report(write(tmp_path / "results.csv", rows))
    assert len(report.results) == 3


def test_the_command_prints_the_verdicts(study, capsys):
    assert script("report").main([str(study), "--out", str(study.parent / "out")]) == 0
    out = capsys.readouterr().out
    assert "organ, finetune: spark beats random init up to 25 %; no difference at 100 %" in out
    assert "75 % of the labels saved" in out
    table = (study.parent / "out" / "results.md").read_text()
    top = table.split("\n## organ")[0]
    assert "spark beats random init up to 25 %" in top and "75 % of the labels saved" in top
    assert script("report").main([str(study), "--baseline", "swav"]) == 1
    assert "no checkpoint labelled 'swav'" in capsys.readouterr().err


def test_without_random_init_the_report_says_so(tmp_path, capsys):
    path = write(tmp_path / "results.csv", [run("spark", 0.8, seed=s) for s in (0, 1)])
    assert script("report").main([str(path)]) == 0
    assert "--baseline" in capsys.readouterr().out
    assert "name one with `--baseline`" in (tmp_path / "report" / "results.md").read_text()
    assert not np.isnan(pd.read_csv(tmp_path / "report" / "summary.csv").accuracy_mean).any()


def segmentation_run(method, dice, fraction, seed):
    """A segmentation row: Dice and IoU, hd95, test patients; no classification scores."""
    row = {**run(method, float("nan"), fraction, seed, task="liver"), "dice": dice, "iou": dice - 0.1,
           "hd95": 10 - 5 * dice, "n_test": 6, "n_train": round(20 * fraction),
           "class_scores": json.dumps({"liver": dice}), "classes": json.dumps(["background", "liver"])}
    row["recall"] = float("nan")
    return row


def test_a_results_file_with_segmentation_and_classification_reports_each_by_its_score(tmp_path):
    rows = study_rows()
    for fraction in (0.25, 1.0):
        for seed, offset in enumerate(SEED_OFFSET):
            base = 0.5 + fraction / 4 + offset
            rows += [segmentation_run("random", base, fraction, seed),
                     segmentation_run("spark", base + 0.1 + offset, fraction, seed)]
    paths = write_report(write(tmp_path / "results.csv", rows), tmp_path / "report")
    text = paths["table"].read_text()
    assert "(accuracy; dice for segmentation, compared with random init)" in text
    assert "- liver, finetune (dice): spark beats random init at every fraction" in text
    assert "6 test patients; a claim of labels saved needs 3 seeds and 10 test patients" in text
    assert "- organ, finetune: spark beats random init" in text
    assert "### hd95: mean +- std over seeds" in text and "### hd95: difference" not in text
    assert "25 % (5 patients, 6 test patients)" in text  # columns count patients
    assert "predictions_liver" not in paths  # no saved test slices: no picture, no error
    differences = pd.read_csv(paths["differences"])
    assert set(differences[differences.task == "liver"].metric) == {"dice", "iou"}
    assert set(differences[differences.task == "organ"].metric) == set(METRICS)
    summary = pd.read_csv(paths["summary"])
    liver = summary[(summary.task == "liver") & (summary.label == "spark") & (summary.fraction == 1.0)]
    assert liver.dice_mean.iloc[0] == pytest.approx(0.75 + 0.1) and liver.hd95_high.iloc[0] > 1  # not cut at 1


def test_a_segmentation_row_with_unreadable_class_scores_is_skipped(tmp_path):
    rows = [segmentation_run(m, 0.6, 1.0, s) for m in ("random", "spark") for s in (0, 1)]
    rows[-1]["class_scores"] = '{"liver": 0.6'
    with pytest.warns(UserWarning, match=r"row 5 is incomplete \(class_scores is not a JSON object"):
        report = build_report(write(tmp_path / "results.csv", rows))
    assert len(report.results) == 3 and report.headline() == "dice"
