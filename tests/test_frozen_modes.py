"""The frozen-feature modes (knn, linear) through the real entry points, and the linear probe."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medssl.downstream.cli import finetune_cli
from medssl.downstream.linear_probe import C_GRID, LinearProbe
from medssl.downstream.phantom_tasks import write_phantom_tasks
from medssl.downstream.sweep import SweepConfig, run_sweep

from conftest import task_counts

FROZEN = ("knn", "linear")
SMALL = ("--model.arch", "resnet18", "--data.image_size", "32", "--data.batch_size", "16",
         "--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.precision", "32-true")


@pytest.fixture(scope="module")
def organ(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen") / "tasks"
    return write_phantom_tasks(root, size=32, counts=task_counts(20, 1, 1), progress=False)["organ"]


def logged_scalars(folder) -> dict[str, float]:
    """The last value of each scalar the run logged (TensorBoard, the command's logger)."""
    values = {}
    for events in sorted(Path(folder).glob("events.out.tfevents.*")):
        log = EventAccumulator(str(events))
        log.Reload()
        values.update({tag: log.Scalars(tag)[-1].value for tag in log.Tags()["scalars"]})
    return values


@pytest.mark.parametrize("mode", FROZEN)
@pytest.mark.slow
def test_the_command_fits_one_pass_writes_no_checkpoint_and_tests_the_classifier(mode, organ, tmp_path,
                                                                                 recwarn):
    # the command's own callbacks (best-checkpoint saving) and Lightning's sanity check stay on
    cli = finetune_cli(["fit", "--data.kind", "medmnist", "--data.path", str(organ), *SMALL,
                        "--model.mode", mode, "--trainer.max_epochs", "3", "--data.augment", "true",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
                       verbose=False)
    assert cli.trainer.num_sanity_val_steps > 0
    assert not list(tmp_path.rglob("*.ckpt"))
    assert cli.trainer.current_epoch == 1  # one pass, whatever max_epochs says
    assert cli.datamodule.hparams.augment is False  # features of the images themselves
    assert cli.trainer.global_step == 0  # no optimiser step
    results = cli.model.test_results
    assert 1 / 7 < results["accuracy"] <= 1 and len(results["confusion"]) == 7  # above chance
    logged = logged_scalars(cli.trainer.log_dir)
    assert 0 <= logged["val/accuracy"] <= 1  # scored on validation too
    if mode == "linear":
        assert cli.model.classifier.c in C_GRID and logged["val/probe_c"] == pytest.approx(cli.model.classifier.c)
    shown = [str(w.message) for w in recwarn]
    assert not [m for m in shown if "configure_optimizers" in m or "logging interval" in m], shown


@pytest.mark.slow
def test_sweep_runs_in_each_frozen_mode(organ, tmp_path):
    out = tmp_path / "results.csv"
    for mode in FROZEN:  # one results file: rows are told apart by their mode
        config = SweepConfig({"organ": ("medmnist", str(organ))}, ("random",), fractions=(1.0,), seeds=(0,),
                             finetune=(*SMALL, "--model.mode", mode, "--trainer.max_epochs", "2"))
        run_sweep(config, out, progress=False)
    table = pd.read_csv(out)
    assert sorted(table["mode"]) == sorted(FROZEN)
    assert table["accuracy"].map(math.isfinite).all() and table["accuracy"].between(0, 1).all()
    assert (table["epochs"] == 1).all()
    assert not list(tmp_path.rglob("*.ckpt"))


def clusters(rng, n, centres, spread):
    labels = np.arange(n) % len(centres)
    return centres[labels] + spread * rng.normal(size=(n, centres.shape[1])), labels


def test_separable_features_are_classified_perfectly_and_ties_keep_the_largest_c():
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(3, 16)
    (x, y), val, (tx, ty) = (clusters(rng, n, centres, 0.5) for n in (30, 15, 60))
    probe = LinearProbe(x, y, 3, val=val)
    assert probe.val_accuracy == 1.0
    assert probe.c == max(C_GRID)  # every C does as well: the least regularised is kept
    assert (probe.predict(tx).numpy() == ty).all()
    probs = probe.probabilities(tx)
    assert probs.shape == (60, 3) and np.allclose(probs.sum(1).numpy(), 1)


def test_a_label_carried_by_one_dimension_among_noise_is_found():
    rng = np.random.default_rng(1)
    centres = np.zeros((3, 16))
    centres[:, 0] = [-4, 0, 4]  # the label in dimension 0 only; 15 dimensions of noise
    (x, y), val, (tx, ty) = (clusters(rng, n, centres, 1.0) for n in (150, 60, 300))
    accuracy = float((LinearProbe(x, y, 3, val=val).predict(tx).numpy() == ty).mean())
    assert accuracy > 0.85  # chance: 1/3; the best rule's: 0.95


def test_c_is_the_one_the_validation_features_score_best():
    """95 common-class images around 0, 5 rare-class ones around (3, 0): a strongly regularised
    probe calls everything common, a weak one calls (3, 0) rare. Validation images at (3, 0)
    labelled rare call for a large C; labelled common, for a small one."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (95, 2)), rng.normal(0, 1, (5, 2)) + [3, 0]])
    y = np.repeat([0, 1], [95, 5])
    at_rare = [3, 0] + 0.1 * rng.normal(size=(4, 2))
    rare = LinearProbe(x, y, 2, val=(at_rare, np.ones(4, int)))
    common = LinearProbe(x, y, 2, val=(at_rare, np.zeros(4, int)))
    assert rare.val_accuracy == common.val_accuracy == 1.0
    assert {rare.c, common.c} <= set(C_GRID) and common.c < rare.c
    assert (rare.predict(at_rare) == 1).all() and (common.predict(at_rare) == 0).all()


def test_a_class_the_training_features_lack_gets_no_probability():
    rng = np.random.default_rng(0)
    x, y = clusters(rng, 20, 10 * np.eye(2, 8), 0.5)
    probs = LinearProbe(x, y, 4).probabilities(x)
    assert probs.shape == (20, 4) and (probs[:, 2:] == 0).all()
    assert (probs.argmax(1).numpy() == y).all()
