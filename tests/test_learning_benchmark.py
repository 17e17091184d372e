"""The learning benchmark (benchmarks/learning/), its views ablation and learning curves: their
statistics on known numbers, and one tiny real run of each command."""
import argparse
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmarks import curves, learning, views
from benchmarks.common import quick_config
from benchmarks.learning import figures, options
from benchmarks.learning.comparison import compare
from benchmarks.learning.probes import effective_rank, features, input_of, scores
from benchmarks.learning.report import schedule_words
from medssl.data.phantom import write_phantom_store
from medssl.downstream.phantom_tasks import write_phantom_tasks

from conftest import ROOT, task_counts

pytestmark = pytest.mark.slow


def results_with(organ_scores: dict, random_scores: dict) -> dict:
    """Results of one method and its random-init pair: {probe: {labels: [accuracy per seed]}}."""
    def task(scores):
        return {"scores": scores, "effective_rank": 10.0, "train_per_class": 10}

    return {"m": {"baseline": "r", "tasks": {"organ": task(organ_scores)}},
            "r": {"tasks": {"organ": task(random_scores)}}}


def test_a_method_passes_only_when_every_fine_tuning_goal_interval_lies_above_zero():
    base = {probe: {5: [0.60, 0.62, 0.58, 0.61], 10: [0.70, 0.71, 0.69, 0.72]} for probe in learning.PROTOCOLS}
    better = {probe: {n: [v + 0.05 + 0.01 * i for i, v in enumerate(vs)] for n, vs in by_n.items()}
              for probe, by_n in base.items()}
    assert compare(results_with(better, base), ["m"])["m"]["passed"]

    one_miss = {probe: dict(by_n) for probe, by_n in better.items()}
    one_miss["finetune"][10] = [v + d for v, d in zip(base["finetune"][10], (0.05, -0.05, 0.04, -0.04))]
    comparison = compare(results_with(one_miss, base), ["m"])["m"]
    assert not comparison["passed"]
    row = next(r for r in comparison["rows"] if (r["probe"], r["labels"]) == ("finetune", 10))
    assert row["difference"] == pytest.approx(0.0) and row["low"] < 0 < row["high"] and row["n"] == 4
    # the hand-computed t interval of the differences 0.05, 0.06, 0.07, 0.08 (t(0.975, 3) = 3.1824)
    row = next(r for r in comparison["rows"] if (r["probe"], r["labels"]) == ("knn", 5))
    half = 3.1824 * np.std([0.05, 0.06, 0.07, 0.08], ddof=1) / 2
    assert (row["low"], row["high"]) == pytest.approx((0.065 - half, 0.065 + half), abs=1e-4)
    # the frozen-feature probes are the second opinion: a miss there leaves the goal to fine-tuning
    probes_miss = {probe: dict(by_n) for probe, by_n in better.items()}
    probes_miss["linear"] = base["linear"]
    assert compare(results_with(probes_miss, base), ["m"])["m"]["passed"]


def test_all_labels_pair_the_one_backbone_score_with_every_initial_draw():
    base = {probe: {learning.ALL: [0.60, 0.64, 0.62]} for probe in learning.PROBES}
    mine = {probe: {learning.ALL: [0.70]} for probe in learning.PROBES}
    (row, *_) = compare(results_with(mine, base), ["m"])["m"]["rows"]
    assert row["n"] == 3 and row["difference"] == pytest.approx(0.08) and row["random"] == pytest.approx(0.62)
    assert row["low"] < 0.08 < row["high"]


def test_effective_rank_counts_the_directions_features_use():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(500, 64))
    collapsed = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 64))
    assert effective_rank(spread) > 50
    assert effective_rank(collapsed) < 4.5


def test_scores_use_the_same_subsets_for_every_backbone():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    informative = np.eye(3)[labels] + 0.3 * rng.normal(size=(60, 3))
    noise = rng.normal(size=(60, 3))
    feats = {"train": (informative, labels), "val": (informative[:30], labels[:30]), "test": (informative, labels)}
    useless = {split: (noise[:len(y)], y) for split, (_, y) in feats.items()}
    good, bad = (scores(f, 3, [2, learning.ALL], [0, 1, 2]) for f in (feats, useless))
    assert len(good["knn"][2]) == 3 and len(good["knn"][learning.ALL]) == 1  # every seed picks all images
    assert min(good["linear"][2]) > 0.8 and np.mean(bad["linear"][learning.ALL]) < 0.7


def tiny_benchmark(tmp_path, epochs: int, frozen: int):
    """A benchmark work folder with a tiny phantom store and tasks, and a fine-tuning schedule of
    ``epochs`` epochs (``frozen`` of them with the backbone frozen)."""
    work = tmp_path / "work"
    write_phantom_store(work / "phantom" / "store", patients=5, slices_per_patient=8, size=64, seed=0,
                        workers=1, progress=False)
    counts = task_counts(4, 6, 6, 6, 4)
    write_phantom_tasks(work / "phantom" / "tasks", size=32, counts=counts, progress=False)
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(f"trainer: {{max_epochs: {epochs}}}\nmodel: {{freeze_epochs: {frozen}}}\n")
    return work, schedule


def test_the_benchmark_command_pretrains_scores_and_writes_its_report(tmp_path):
    work, schedule = tiny_benchmark(tmp_path, epochs=2, frozen=1)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks.learning", "--methods", "mocov2", "--steps", "5", "--labels", "1",
               "--seeds", "2", "--finetune-labels", "1", "--finetune-seeds", "2", "--finetune-tasks", "organ",
               "--segmentation-patients", "1", "--segmentation-seeds", "2",
               "--finetune-schedule", str(schedule), "--work", str(work), "--out", str(out)]
    # killed (SIGKILL) after its first fine-tuning run of the backbone: pre-training, random init's
    # scores (frozen and fine-tuned) and the backbone's frozen scores are done by then
    killed = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    for line in killed.stdout:
        seen.append(line)
        if "fine-tuned mocov2" in line:
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=60)
    assert any("fine-tuned mocov2" in line for line in seen), "".join(seen)[-3000:]
    assert sum("fine-tuned random" in line for line in seen) == 4  # organ and segmentation, 2 seeds each
    assert not list(out.glob("learning-*.json"))
    # the same command goes on: it re-uses the run, every score kept, and fine-tunes the one run left
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pre-training mocov2" not in proc.stdout and "evaluating" not in proc.stdout
    assert "scores of random" in proc.stdout and "fine-tuned random" not in proc.stdout
    assert proc.stdout.count("fine-tuned mocov2") == 3
    (report,) = [json.loads(p.read_text()) for p in out.glob("learning-*.json")]
    assert report["pretraining"]["mocov2"]["steps"] == 5 and report["pretraining"]["mocov2"]["loss"]
    rows = report["comparison"]["mocov2"]["rows"]
    assert {(r["task"], r["probe"]) for r in rows} == {(t, p) for t in learning.TASKS for p in learning.PROBES} | {
        ("organ", learning.FINETUNE), (learning.SEGMENTATION, learning.FINETUNE)}
    assert all(r["n"] == 2 and 0 <= r["accuracy"] <= 1 for r in rows)
    (random_key,) = [k for k in report["results"] if k.startswith(learning.RANDOM)]
    random = report["results"][random_key]
    assert random["init_seeds"] == [0, 1] and report["results"]["mocov2"]["baseline"] == random_key
    organ = random["tasks"]["organ"]["scores"]
    assert all(len(organ[probe]["1"]) == 2 for probe in learning.PROTOCOLS)
    assert report["settings"]["finetune"]["schedule_settings"] == {"trainer": {"max_epochs": 2},
                                                                    "model": {"freeze_epochs": 1}}
    text = (out / f"learning-{report['machine']}.md").read_text()
    assert "| mocov2 | 5 |" in text and ("PASS" in text or "MISS" in text)
    assert "with another schedule than finetune_quick.yaml: {'trainer': {'max_epochs': 2}" in text
    assert re.search(r"(PASS|MISS) \(\d of \d above zero\) \|", text)  # how many goal rows clear zero
    assert "| mocov2 | finetune | " in text
    assert "## segmentation: test Dice" in text and "| 1 patients |" in text  # rows, outside the goal
    assert (out / f"learning-{report['machine']}-difference.png").stat().st_size > 0
    # the same command again re-uses the finished run and every score: the same report
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "pre-training mocov2" not in again.stdout and "evaluating" not in again.stdout
    assert "  fine-tuned " not in again.stdout
    (report_again,) = [json.loads(p.read_text()) for p in out.glob("learning-*.json")]
    assert report_again["comparison"] == report["comparison"]
    first = tmp_path / "first.json"
    first.write_text(json.dumps(report))
    # other settings: scored again; a third fine-tuning seed adds one run per entry
    more = subprocess.run([*command[:-2], "--seeds", "3", "--finetune-seeds", "3", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert "evaluating mocov2" in more.stdout and "evaluating random" in more.stdout
    assert more.stdout.count("  fine-tuned ") == 2
    # another method, added to the first report (a benchmark run a few methods at a time): one
    # report of both, every figure of mocov2's kept; random init's scores are re-used
    other = [*command[:4], "simclr", *command[5:-2], "--out", str(tmp_path / "out2")]
    added = subprocess.run([*other, "--add-to", str(first)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert added.returncode in (0, 1) and "Traceback" not in added.stderr, added.stdout[-3000:] + added.stderr[-3000:]
    assert "pre-training simclr" in added.stdout and "fine-tuned random" not in added.stdout, added.stdout[-2000:]
    (both,) = [json.loads(p.read_text()) for p in (tmp_path / "out2").glob("learning-*.json")]
    assert both["settings"]["methods"] == ["mocov2", "simclr"] and list(both["comparison"]) == ["mocov2", "simclr"]
    assert both["comparison"]["mocov2"] == report["comparison"]["mocov2"]
    assert both["pretraining"]["mocov2"] == report["pretraining"]["mocov2"]
    assert [r["methods"] for r in both["runs"]] == [["mocov2"], ["simclr"]]
    text = (tmp_path / "out2" / f"learning-{both['machine']}.md").read_text()
    assert "| mocov2 | 5 |" in text and "| simclr | 5 |" in text and text.count(" --add-to ") == 1
    # a report of other settings stops it before any work, naming what differs
    refused = subprocess.run([*other, "--add-to", str(out / f"learning-{both['machine']}.json")], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "pre-training" not in refused.stdout
    assert "other settings (finetune, seeds)" in refused.stderr and "learning-" in refused.stderr
    # so is a report scored on other phantom tasks (here: another version's test sets)
    assert report["settings"]["phantom"]["counts"]["organ_per_class"] == 4
    phantom = report["settings"]["phantom"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps({**report, "settings": {**report["settings"], "phantom": {
        **phantom, "counts": {**phantom["counts"], "brain_extra_test_per_class": 90}}}}))
    refused = subprocess.run([*other, "--add-to", str(older)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "other settings (phantom)" in refused.stderr, refused.stderr[-2000:]


def test_a_run_folder_is_re_used_only_with_the_settings_it_was_begun_with(tmp_path, monkeypatch):
    from benchmarks.learning import pretraining

    runs = []

    def fake_pretraining(command, **kwargs):  # what the pre-training command leaves: a backbone file
        runs.append(command)
        run_dir = Path(command[command.index("--trainer.default_root_dir") + 1])
        torch.save({"steps": 7, "epochs": 1}, run_dir / "mocov2_backbone.pt")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(pretraining.subprocess, "run", fake_pretraining)
    config, run_dir = tmp_path / "mocov2.yaml", tmp_path / "work" / "pretrain" / "mocov2"
    config.write_text("model: {arch: resnet18}\n")
    assert pretraining.pretrain("mocov2", config, tmp_path / "store", run_dir, 10, 1)["steps"] == 7
    assert pretraining.pretrain("mocov2", config, tmp_path / "store", run_dir, 10, 1)["steps"] == 7
    assert len(runs) == 1  # the second call re-used the first
    with pytest.raises(RuntimeError, match=r"mocov2: pre-trained with other settings \(the budget: "
                                           r"\{'minutes': 10\} then, \{'minutes': 30\} now\); give another --work"):
        pretraining.pretrain("mocov2", config, tmp_path / "store", run_dir, 30, 1)
    config.write_text("model: {arch: resnet50}\n")
    with pytest.raises(RuntimeError, match="the config file's contents"):
        pretraining.pretrain("mocov2", config, tmp_path / "store", run_dir, 10, 1)
    assert len(runs) == 1


def test_random_init_draws_different_weights_per_seed(tmp_path):
    write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(4, 6, 6), progress=False)
    from medssl.downstream.tasks import load_task

    task = load_task("covid", tmp_path / "tasks" / "covid", progress=False)
    mapping = input_of(None, quick_config("mocov2"))
    a, b, a_again = (features(None, "resnet18", task, mapping, init_seed=s)["test"][0] for s in (0, 1, 0))
    assert np.array_equal(a, a_again) and not np.allclose(a, b)


def study_style_quick_configs(folder: Path) -> Path:
    """A folder with MoCo v2's quick config whose views flip, rotate and crop anywhere, as the study's
    do (the views ablation's starting point, whatever defaults it has chosen since)."""
    config = yaml.safe_load(quick_config("mocov2").read_text())
    config["data"]["views"] = [{"size": 64, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "hflip_p": 0.5,
                                "vflip_p": 0.5, "jitter_p": 0.8, "blur_p": 0.5, "noise_p": 0.5,
                                "mean": [0.25], "std": [0.32]}]
    folder.mkdir(parents=True)
    (folder / "mocov2_quick.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def test_views_ablation_changes_one_thing_per_variant_and_counts_laterality_errors(tmp_path):
    study_style = study_style_quick_configs(tmp_path / "quick")
    configs = {v: yaml.safe_load(views.variant_config("mocov2", v, study_style, tmp_path / "c").read_text())
               for v in views.VARIANTS}
    as_is = configs["as-is"]
    assert as_is == yaml.safe_load((study_style / "mocov2_quick.yaml").read_text())
    assert as_is["data"]["views"][0]["hflip_p"] > 0 and as_is["data"]["views"][0]["rotate_p"] > 0
    flips = {k: v for k, v in configs["no-flips"]["data"]["views"][0].items() if v != as_is["data"]["views"][0][k]}
    assert flips == {"hflip_p": 0.0, "vflip_p": 0.0}
    assert configs["no-rotation"]["data"]["views"][0]["rotate_p"] == 0.0
    assert configs["full-range"]["data"]["intensity"] == {"mode": "full"}
    assert as_is["data"]["intensity"] == {"mode": "random_window"}  # levels -600..100, widths 400..2000
    assert configs["fixed-window"]["data"]["intensity"] == {"mode": "window", "level": -250.0, "width": 1200.0}
    assert configs["large-crops"]["data"]["views"][0]["scale"] == [0.6, 1.0]
    assert configs["centred-crops"]["data"]["views"][0]["crop_position"] == "centre"
    assert {k: v for k, v in configs["ct-aware"]["data"]["views"][0].items()
            if v != as_is["data"]["views"][0][k]} == {"hflip_p": 0.0, "vflip_p": 0.0, "rotate_p": 0.0}
    for v in views.VARIANTS:  # nothing but the views and the intensity changes
        assert {k: configs[v][k] for k in configs[v] if k != "data"} == {k: as_is[k] for k in as_is if k != "data"}

    work, schedule = tiny_benchmark(tmp_path, epochs=1, frozen=0)
    command = [sys.executable, "-m", "benchmarks.views", "--methods", "mocov2", "--variants", "as-is", "no-flips",
               "--configs", str(study_style), "--steps", "3", "--labels", "1", "--seeds", "2", "--finetune-seeds", "1",
               "--finetune-schedule", str(schedule), "--work", str(work), "--out", str(tmp_path / "out")]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from medssl.downstream.tasks import load_task

    organ = load_task("medmnist", work / "phantom" / "tasks" / "organsmnist_phantom.npz", progress=False)
    mirrors = [organ.classes.index(name) for name in ("kidney-left", "kidney-right", "lung-left", "lung-right")]
    mirror_tested = int(np.isin(organ.splits["test"].labels, mirrors).sum())
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("views-*.json")]
    assert set(report["entries"]) == {"mocov2-as-is", "mocov2-no-flips"}
    for entry in report["entries"].values():
        assert entry["steps"] == 3
        assert {(r["task"], r["probe"]) for r in entry["comparison"]["rows"]} == {
            (t, p) for t in learning.TASKS for p in learning.PROBES} | {("organ", learning.FINETUNE)}
        lateral = entry["laterality"]
        assert set(lateral["errors"]) == {"kidney-left / kidney-right", "lung-left / lung-right"}
        assert all(len(counts) == 2 and 0 <= min(counts) for counts in lateral["errors"].values())
        assert lateral["tested"] == mirror_tested and sum(max(c) for c in lateral["errors"].values()) <= mirror_tested
    (random_lateral,) = report["random_laterality"].values()
    assert random_lateral["tested"] == mirror_tested > 0
    text = (tmp_path / "out" / f"views-{report['machine']}.md").read_text()
    assert "| mocov2 | no-flips | 3 |" in text and "laterality" in text
    assert (tmp_path / "out" / f"views-{report['machine']}-mocov2.png").stat().st_size > 0
    assert "| method | variant | covid knn 1/class | covid linear 1/class | brain knn 1/class |" in text
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "  pre-training " not in again.stdout and "  fine-tuned " not in again.stdout
    assert "evaluating" not in again.stdout
    # another method added to that report: both methods' rows in one report
    (study_style / "simclr_quick.yaml").write_text(quick_config("simclr").read_text())
    written = tmp_path / "out" / f"views-{report['machine']}.json"
    added = subprocess.run([*command[:4], "simclr", *command[5:], "--add-to", str(written)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stdout[-3000:] + added.stderr[-3000:]
    both = json.loads(written.read_text())
    assert set(both["entries"]) == {"mocov2-as-is", "mocov2-no-flips", "simclr-as-is"}
    assert both["same_as"] == {"simclr-no-flips": "simclr-as-is"}
    assert both["settings"]["methods"] == ["mocov2", "simclr"]
    assert both["entries"]["mocov2-no-flips"] == report["entries"]["mocov2-no-flips"]
    text = (tmp_path / "out" / f"views-{report['machine']}.md").read_text()
    assert "| mocov2 | no-flips | 3 |" in text and "| simclr | as-is | 3 |" in text


def test_views_ablation_runs_a_config_once_when_a_change_leaves_it_as_it_was(tmp_path):
    runs, same_as = views.distinct_variants("dino", list(views.VARIANTS), None, tmp_path)
    assert same_as == {"dino-no-rotation": "dino-as-is",  # its views do not rotate
                       "dino-large-crops": "dino-as-is",  # its global crops take 90 % or more already
                       "dino-ct-aware": "dino-no-flips",
                       "dino-fixed-window": "dino-as-is"}  # its quick config took the fixed window
    assert list(runs) == ["as-is", "no-flips", "full-range", "centred-crops"]
    assert len({path.read_text() for path in runs.values()}) == len(runs)
    study_style = study_style_quick_configs(tmp_path / "quick")
    runs, same_as = views.distinct_variants("mocov2", list(views.VARIANTS), study_style, tmp_path / "c")
    assert same_as == {} and list(runs) == list(views.VARIANTS)


def test_quick_configs_chosen_by_the_views_ablation_keep_ct_anatomy(tmp_path):
    """SimCLR's, MoCo v2's, BYOL's, SwAV's and VICReg's quick configs took the ablation's verdicts
    (docs/protocol.md): no flips or rotation, MoCo v2 also centred crops of at least 60 %; BYOL no
    rotation, flips kept; SwAV no flips (its views never rotate); SparK keeps its flips; DINO keeps
    its flips and sees one fixed window; Barlow Twins no flips or rotation (the four changes that
    passed the rule alone fine-tuned worse together).
    The variants that take those views away change nothing, while the full configs keep the study's
    views."""
    runs, same_as = views.distinct_variants("simclr", list(views.VARIANTS), None, tmp_path / "simclr")
    assert {k: v for k, v in same_as.items() if v == "simclr-as-is"} == {
        "simclr-no-flips": "simclr-as-is", "simclr-no-rotation": "simclr-as-is", "simclr-ct-aware": "simclr-as-is"}
    runs, same_as = views.distinct_variants("mocov2", list(views.VARIANTS), None, tmp_path / "mocov2")
    assert list(runs) == ["as-is", "full-range", "fixed-window"]
    assert set(same_as.values()) == {"mocov2-as-is"}
    runs, same_as = views.distinct_variants("byol", list(views.VARIANTS), None, tmp_path / "byol")
    assert same_as == {"byol-no-rotation": "byol-as-is", "byol-ct-aware": "byol-no-flips"}
    runs, same_as = views.distinct_variants("swav", list(views.VARIANTS), None, tmp_path / "swav")
    assert list(runs) == ["as-is", "full-range", "fixed-window", "centred-crops"]  # no flips, no rotation
    assert all(v["hflip_p"] == 0 for v in yaml.safe_load(runs["as-is"].read_text())["data"]["views"])
    runs, same_as = views.distinct_variants("vicreg", list(views.VARIANTS), None, tmp_path / "vicreg")
    assert {k for k, v in same_as.items() if v == "vicreg-as-is"} == {
        "vicreg-no-flips", "vicreg-no-rotation", "vicreg-ct-aware"}
    assert "large-crops" in runs and "centred-crops" in runs  # random crops kept
    runs, same_as = views.distinct_variants("spark", list(views.VARIANTS), None, tmp_path / "spark")
    assert "no-flips" in runs and same_as["spark-ct-aware"] == "spark-no-flips"  # SparK keeps its flips
    runs, same_as = views.distinct_variants("dino", list(views.VARIANTS), None, tmp_path / "dino")
    assert "no-flips" in runs and same_as["dino-fixed-window"] == "dino-as-is"  # flips kept, one fixed window
    assert yaml.safe_load(runs["as-is"].read_text())["data"]["intensity"] == {
        "mode": "window", "level": -250.0, "width": 1200.0}
    runs, same_as = views.distinct_variants("barlowtwins", list(views.VARIANTS), None, tmp_path / "barlowtwins")
    assert {k for k, v in same_as.items() if v == "barlowtwins-as-is"} == {
        "barlowtwins-no-flips", "barlowtwins-no-rotation", "barlowtwins-ct-aware"}
    assert {"full-range", "centred-crops", "large-crops"} <= set(runs)  # random windows and crops kept
    for method in ("simclr", "mocov2", "byol", "swav", "vicreg", "barlowtwins"):
        study = yaml.safe_load((ROOT / "Pre-Training" / "configs" / f"{method}.yaml").read_text())["data"]["views"][0]
        assert study.get("hflip_p", 0.5) > 0 and study.get("crop_position", "random") == "random"


def test_configs_at_a_revision_are_the_quick_configs_as_committed_then(tmp_path):
    """``--configs-at REV`` repeats a report made before the quick configs changed: it writes the
    revision's ``*_quick.yaml`` (not the full configs, not today's files) into the work folder."""
    repo, work = tmp_path / "repo", tmp_path / "work"
    configs = repo / "Pre-Training" / "configs"
    configs.mkdir(parents=True)

    def git(*words):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *words],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (configs / "simclr_quick.yaml").write_text("data: {views: [{hflip_p: 0.5}]}\n")
    (configs / "simclr.yaml").write_text("full: true\n")
    git("add", ".")
    git("commit", "-qm", "study views")
    before = git("rev-parse", "HEAD")
    (configs / "simclr_quick.yaml").write_text("data: {views: [{hflip_p: 0.0}]}\n")
    git("commit", "-qam", "no flips")
    folder = options.configs_at(before[:7], work, repo)
    assert folder == work / f"configs-at-{before[:12]}"
    assert [p.name for p in folder.iterdir()] == ["simclr_quick.yaml"]
    assert (folder / "simclr_quick.yaml").read_text() == "data: {views: [{hflip_p: 0.5}]}\n"
    assert options.configs_at("HEAD", work, repo).joinpath("simclr_quick.yaml").read_text().count("0.0") == 1
    with pytest.raises(SystemExit, match="--configs-at no-such-revision: git cannot read it"):
        options.configs_at("no-such-revision", work, repo)
    ap = argparse.ArgumentParser()
    options.scoring_arguments(ap, labels=[5], finetune_labels=[5], finetune_seeds=1, finetune_tasks=["organ"],
                              work=str(work))
    assert options.parse(ap, ["--configs-at", "HEAD"]).configs.name.startswith("configs-at-")
    with pytest.raises(SystemExit):  # one way to name the configs at a time
        options.parse(ap, ["--configs-at", "HEAD", "--configs", str(configs)])


def test_learning_curves_score_the_backbones_kept_along_one_run(tmp_path):
    work, schedule = tiny_benchmark(tmp_path, epochs=1, frozen=0)
    command = [sys.executable, "-m", "benchmarks.curves", "--methods", "mocov2", "--minutes", "0.25", "--marks", "0.05",
               "0.1", "1", "--labels", "1", "--seeds", "2", "--finetune-labels", "1", "--finetune-seeds", "2",
               "--finetune-schedule", str(schedule), "--work", str(work), "--out", str(tmp_path / "out")]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kept = sorted(p.name for p in (work / "curves" / "mocov2" / "backbones").iterdir())
    assert kept == ["mocov2_backbone_0.05min.pt", "mocov2_backbone_0.1min.pt"]  # the 1-minute mark lies past the end
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("curves-*.json")]
    entry = report["methods"]["mocov2"]
    assert list(entry["marks"]) == ["0.05", "0.1", "0.25"]
    steps = [entry["marks"][m]["steps"] for m in entry["marks"]]
    assert steps == sorted(steps) and steps[0] >= 1
    assert entry["marks"]["0.1"]["images"] == entry["marks"]["0.1"]["steps"] * 32
    curve = entry["curves"]["organ/finetune/1"]
    assert [p["minutes"] for p in curve] == [0.05, 0.1, 0.25] and all(p["low"] <= p["difference"] for p in curve)
    assert {key.split("/")[0] for key in entry["curves"]} == set(learning.TASKS)
    assert report["cpu_minutes"]["pretraining"] > 0 and report["cpu_minutes"]["finetuning"] > 0
    assert (tmp_path / "out" / f"curves-{report['machine']}.png").stat().st_size > 0
    assert "clears zero at" in (tmp_path / "out" / f"curves-{report['machine']}.md").read_text()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert "  pre-training " not in again.stdout and "  fine-tuned " not in again.stdout


def test_a_curve_clears_zero_where_every_later_interval_lies_above_it():
    points = [{"minutes": m, "low": low} for m, low in ((2.5, -0.1), (5, 0.01), (10, -0.01), (20, 0.02), (40, 0.05))]
    assert curves.first_clear(points) == 20
    assert curves.first_clear(points[:3]) is None


def views_entry(method: str, variant: str, frozen: dict[str, float], finetune: float | None) -> dict:
    """An entry of the views report whose kNN and linear differences on each task are ``frozen[task]``."""
    rows = [{"task": t, "probe": p, "labels": n, "difference": d}
            for t, d in frozen.items() for p in learning.PROBES for n in (5, 10)]
    if finetune is not None:
        rows.append({"task": "organ", "probe": learning.FINETUNE, "labels": 5, "difference": finetune})
    return {"method": method, "variant": variant, "comparison": {"rows": rows}}


UNDECIDED = "not decided: a task or fine-tuning is missing"


@pytest.mark.parametrize("variant, frozen, finetune, verdict", [
    ("no-flips", {"organ": -0.02, "covid": -0.01, "brain": +0.05}, -0.01, "keep the quick config"),
    ("no-flips", {"organ": -0.02, "covid": -0.01, "brain": +0.05}, +0.01, "change"),  # fine-tuning gains
    ("ct-aware", {"organ": -0.02, "covid": +0.01, "brain": +0.05}, -0.03, "change"),  # worse on one task only
    ("centred-crops", {"organ": +0.02, "covid": +0.01, "brain": -0.05}, 0.0, "change"),
    ("centred-crops", {"organ": +0.02, "covid": -0.01, "brain": -0.05}, +0.02, "keep the quick config"),
    ("fixed-window", {"organ": +0.02, "covid": +0.01, "brain": +0.05}, -0.01, "keep the quick config"),
    ("fixed-window", {"organ": +0.02, "covid": +0.01}, +0.01, UNDECIDED),
    ("full-range", {"organ": +0.02, "covid": +0.01, "brain": 0.0}, None, UNDECIDED),
])
def test_views_ablation_applies_the_rule_that_chooses_the_defaults(variant, frozen, finetune, verdict):
    as_is = views_entry("simclr", "as-is", {"organ": 0.05, "covid": 0.02, "brain": 0.0}, 0.05)
    entry = views_entry("simclr", variant, {t: as_is_d + frozen[t] for t, as_is_d in
                                            {"organ": 0.05, "covid": 0.02, "brain": 0.0}.items() if t in frozen},
                        None if finetune is None else 0.05 + finetune)
    got = views.choice(variant, as_is, entry, [5, 10], [5])
    assert got["verdict"] == verdict
    assert got["frozen"] == pytest.approx(frozen)
    report = {"settings": {"labels": [5, 10], "finetune": {"labels": [5]}},
              "entries": {"simclr-as-is": as_is, f"simclr-{variant}": entry}}
    (line,) = [x for x in views.choices(report) if x.startswith("| simclr |")]
    assert line.endswith(f"| {verdict} |") and f"| {variant} |" in line


def test_a_report_to_add_to_is_read_and_checked_before_any_work(tmp_path):
    from benchmarks import common

    settings = {"labels": [5], "seeds": 10, "methods": ["spark"],
                "finetune": {"labels": [5], "schedule": "/a/quick.yaml", "cpu_minutes": 3.0}}
    assert common.earlier_report(None, "views", settings) is None
    broken = tmp_path / "broken.json"
    broken.write_text('{"machine": ')
    with pytest.raises(SystemExit, match="broken.json: not a report"):
        common.earlier_report(broken, "views", settings)
    report = tmp_path / "report.json"
    written = {"machine": common.machine(), "command": "python -m benchmarks.views", "date": "2026-12-01",
               "settings": {**settings, "finetune": {**settings["finetune"], "schedule": "/b/quick.yaml",
                                                     "cpu_minutes": 50.0}}}
    report.write_text(json.dumps({**written, "machine": "other-64cpu"}))
    with pytest.raises(SystemExit, match="written on other-64cpu"):
        common.earlier_report(report, "views", settings)
    report.write_text(json.dumps(written))  # another checkout's schedule path and CPU time: the same settings
    earlier = common.earlier_report(report, "views", {**settings, "methods": ["simclr"]})
    with pytest.raises(SystemExit, match=r"another benchmark \(made by `python -m benchmarks.views`\)"):
        common.earlier_report(report, "learning", settings)
    with pytest.raises(SystemExit, match=r"other settings \(labels\)"):
        common.earlier_report(report, "views", {**settings, "labels": [10]})
    joined = common.add_to(earlier, {"machine": common.machine(), "command": "c2", "date": "2026-12-07",
                                     "settings": {**settings, "methods": ["simclr", "spark"]},
                                     "entries": {"simclr": 1, "spark": 2}}, ("entries",))
    assert joined["settings"]["methods"] == ["simclr", "spark"] and joined["entries"] == {"simclr": 1, "spark": 2}
    assert [r["command"] for r in joined["runs"]] == ["python -m benchmarks.views", "c2"]


def test_the_difference_plot_names_the_methods_where_a_panel_is_drawn(tmp_path, monkeypatch):
    def row(task, probe, labels, difference):
        return {"task": task, "probe": probe, "labels": labels, "difference": difference,
                "low": difference - 0.05, "high": difference + 0.05}

    rows = [row("covid", "finetune", n, 0.05) for n in (5, 10)]  # only COVID fine-tuned
    rows += [row(task, probe, n, 0.01) for task in ("organ", "covid") for probe in ("knn", "linear") for n in (5, 10)]
    report = {"comparison": {m: {"rows": rows} for m in ("simclr", "vicreg")},
              "pretraining": {m: {"loss": [[0, 1.0], [1, 0.5]]} for m in ("simclr", "vicreg")}}
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig) or path)
    figures.plots(report, tmp_path / "learning")
    panels = [ax for ax in drawn[-1].axes if ax.get_visible()]
    assert not drawn[-1].axes[0].get_visible()  # no organ fine-tuning: its panel is hidden
    legends = [ax.get_legend() for ax in panels if ax.get_legend()]
    assert len(legends) == 1 and [t.get_text() for t in legends[0].get_texts()] == ["simclr", "vicreg"]
    assert panels[0].get_ylabel() == "accuracy - random init"


def test_a_missing_or_broken_schedule_stops_the_benchmark_naming_it(tmp_path):
    def plan(path):
        return options.finetune_plan(argparse.Namespace(
            finetune_seeds=1, segmentation_seeds=0, finetune_tasks=["organ"], finetune_labels=[5],
            finetune_schedule=path))

    with pytest.raises(SystemExit, match=r"--finetune-schedule .*nope.yaml: cannot read it"):
        plan(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("trainer: [\n")
    with pytest.raises(SystemExit, match=r"broken.yaml: cannot read it"):
        plan(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 70\n")
    with pytest.raises(SystemExit, match=r"list.yaml: not a fine-tune config"):
        plan(tmp_path / "list.yaml")
    assert plan(learning.QUICK_SCHEDULE)["schedule_settings"]["model"] == {"freeze_epochs": 10}


def test_a_report_calls_only_the_quick_schedule_the_study_s_protocol():
    quick = yaml.safe_load(learning.QUICK_SCHEDULE.read_text())
    assert schedule_words(quick).startswith("the study's protocol, schedule")
    frozen = {**quick, "model": {**quick["model"], "freeze_epochs": 70}}
    assert "with another schedule than finetune_quick.yaml" in schedule_words(frozen)
    assert "'freeze_epochs': 70" in schedule_words(frozen)


def test_a_report_keeps_the_phantom_tasks_it_was_scored_on(tmp_path, capsys):
    from benchmarks.learning.pretraining import phantom_tasks
    from medssl.downstream.phantom_tasks import tasks_description

    work = tmp_path / "work"
    assert phantom_tasks(work) == tasks_description(seed=0)  # not made yet: the tasks it will make
    assert tasks_description(seed=0)["counts"]["brain_extra_test_per_class"] == 90
    counts = task_counts(4, 6, 6, 6, 4)
    write_phantom_tasks(work / "phantom" / "tasks", size=32, counts=counts, progress=False)
    written = json.loads((work / "phantom" / "tasks" / "tasks.json").read_text())
    assert written == tasks_description(size=32, counts=counts)
    capsys.readouterr()
    assert phantom_tasks(work) == written
    printed = capsys.readouterr().out
    assert "tasks.json: phantom tasks other than this version writes" in printed
    assert "size 32 there, 64 now" in printed and "organ_per_class 4 there, 60 now" in printed
    assert "seed" not in printed


def test_curves_cpu_time_adds_up_across_runs_and_names_what_an_earlier_report_did_not_keep():
    report = {"methods": {"spark": {"minutes": 60.0},  # from a report written before per-run times
                          "simclr": {"minutes": 60.0, "pretraining_seconds": 3612.0}},
              "finetune_seconds": {"simclr@2.5min": 600.0, "simclr@60min": 540.0, "random (64 px)": 60.0}}
    minutes = curves.cpu_minutes(report)
    assert minutes["pretraining"] == pytest.approx(120.2) and minutes["finetuning"] == pytest.approx(20.0)
    assert minutes["finetuning_unknown"] == ["spark"]
