"""Segmentation fine-tuning through the one fine-tune command and the sweep: the task's kind picks
the model, scores are per patient (MONAI), the report gives verdicts and prediction pictures."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml

from medssl.checkpoints.export import export_backbone
from medssl.downstream.cli import data_kind, finetune_cli, model_class
from medssl.downstream.finetune import FineTune
from medssl.downstream.formats import FORMATS
from medssl.downstream.phantom_tasks import SEGMENTATION_CLASSES, segmentation_cases
from medssl.downstream.report import write_report
from medssl.downstream.results import examples_path
from medssl.downstream.segmentation.finetune import SegmentationFineTune, patient_scores
from medssl.downstream.sweep import SweepConfig, run_sweep

QUICK = ["--data.image_size", "32", "--data.batch_size", "8", "--data.num_workers", "0", "--model.arch", "resnet18",
         "--trainer.max_epochs", "2", "--model.freeze_epochs", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "segmentation"
    FORMATS["masks"].write(root, segmentation_cases(seed=2, patients=8, slices=3, size=32, progress=False),
                           list(SEGMENTATION_CLASSES))
    return root


def test_the_tasks_kind_is_read_ahead_from_the_command_line_and_config_files(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"kind": "masks", "path": "x"}}))
    nested = tmp_path / "fit.yaml"
    nested.write_text(yaml.safe_dump({"fit": {"data": {"kind": "covid"}}}))
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"kind": "masks"}))
    assert data_kind(["fit", "--data.kind", "masks"]) == "masks"
    assert data_kind(["fit", "--data.kind=covid"]) == "covid"
    assert data_kind(["fit", "--config", str(config)]) == "masks"
    assert data_kind(["--config", str(nested), "fit"]) == "covid"
    assert data_kind(["fit", "--config", str(config), "--data.kind", "folder"]) == "folder"  # the last one wins
    assert data_kind(["fit", "--data", str(data)]) == "masks"
    assert data_kind(["fit"]) is None
    assert model_class(["fit", "--config", str(config)]) is SegmentationFineTune
    assert model_class(["fit", "--data.kind", "medmnist"]) is FineTune


def test_patient_scores_by_hand():
    truth = torch.zeros(2, 8, 8, dtype=torch.long)
    truth[:, 2:6, 2:6] = 1  # class 1 in both slices; class 2 nowhere
    perfect = patient_scores([truth], [truth], num_classes=3)
    assert perfect["class_dice"] == [1.0, 1.0] and perfect["dice"] == 1.0 and perfect["hd95"] == 0.0
    half = truth.clone()
    half[:, 2:6, 4:6] = 0  # half of class 1 found
    missed = truth.clone()
    missed[0, 0, 0] = 2  # class 2 predicted where there is none
    scores = patient_scores([half, missed], [truth, truth], num_classes=3)
    assert scores["class_dice"][0] == pytest.approx((2 * 16 / 48 + 1.0) / 2)  # Dice 2/3 and 1, per patient
    assert scores["class_dice"][1] == pytest.approx(0.5)  # 1 (absent in both) and 0 (a false positive)
    assert scores["dice"] == pytest.approx(np.mean(scores["class_dice"]))


def test_finetune_command_segments_the_task_and_trains_the_encoder_after_the_frozen_epochs(task, tmp_path):
    cli = finetune_cli(["fit", "--data.kind", "masks", "--data.path", str(task), *QUICK, "--model.backbone_lr", "3e-5",
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"], verbose=False)
    model = cli.model
    assert isinstance(model, SegmentationFineTune) and model.hparams.num_classes == len(SEGMENTATION_CLASSES)
    groups = cli.trainer.optimizers[0].param_groups  # the encoder joined at epoch 1, at its own rate
    not_norm = [n for n, _ in model.model.encoder.named_parameters() if ".bn" not in n and not n.startswith("bn")
                and "downsample.1" not in n]
    assert [g["lr"] for g in groups] == [1e-3, 3e-5] and len(groups[1]["params"]) == len(not_norm) == 20
    results = model.test_results
    assert 0 <= results["dice"] <= 1 and results["n_test"] == len(cli.datamodule.task.splits["test"].patients)
    assert len(results["class_dice"]) == len(SEGMENTATION_CLASSES) - 1
    confusion = np.asarray(results["confusion"])
    assert confusion.sum() == len(cli.datamodule.task.splits["test"]) * 32 * 32
    assert model.examples["prediction"].shape[1:] == (32, 32)
    test_masks = cli.datamodule._slices[("test", False)].masks
    most = max(len(torch.unique(m)) for m in test_masks)
    assert len(np.unique(model.examples["truth"][0])) == most  # the picture shows the richest slices
    with pytest.raises(ValueError, match="segmentation task is fine-tuned"):
        SegmentationFineTune(num_classes=3, mode="linear")


def test_the_command_names_the_task_when_a_frozen_mode_is_asked_of_it(task, capsys):
    from medssl.commands.finetune import main

    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--data.kind", "masks", "--data.path", str(task), "--model.mode", "linear"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == (f"error: {task}: a segmentation task is fine-tuned (--model.mode "
                                               "finetune); 'linear' scores frozen features of whole images")


def test_several_devices_are_refused_before_training():
    model = SegmentationFineTune(num_classes=3, arch="resnet18")
    model._trainer = SimpleNamespace(world_size=2)  # what a DDP run's trainer says
    with pytest.raises(ValueError, match="--trainer.devices 1, not 2"):
        model.on_fit_start()


@pytest.mark.slow
def test_a_segmentation_sweep_reports_verdicts_and_prediction_pictures(task, tmp_path):
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()
    backbone.fc = torch.nn.Identity()
    ckpt = export_backbone(backbone, tmp_path / "spark_backbone.pt", method="spark", arch="resnet18")
    config = SweepConfig({"seg": ("masks", str(task))}, checkpoints=("random", str(ckpt)), fractions=(1.0, 0.5),
                         seeds=(0, 1), finetune=tuple(QUICK))
    out = tmp_path / "results" / "results.csv"
    results = run_sweep(config, out, progress=False)
    assert len(results) == 8 and results.dice.between(0, 1).all() and results.accuracy.isna().all()
    assert set(json.loads(results.class_scores.iloc[0])) == set(SEGMENTATION_CLASSES[1:])
    assert (results.n_train <= len(results.n_train)).all() and results.n_test.notna().all()  # patients
    assert len(list((out.parent / "seg" / "predictions").glob("*.npz"))) == len(results)  # one per run
    paths = write_report(out, tmp_path / "report")
    text = paths["table"].read_text()
    assert "seg, finetune (dice): spark" in text and "### dice: difference to random init" in text
    assert "### hd95: mean +- std over seeds" in text and "patients" in text
    assert paths["predictions_seg"].is_file() and "seg_predictions.png" in text
    summary = pd.read_csv(paths["summary"])
    assert summary.dice_mean.notna().all()
    config.finetune = (*QUICK, "--model.mode", "linear")
    with pytest.raises(ValueError, match="segmentation task: it is fine-tuned"):
        run_sweep(config, tmp_path / "other.csv", progress=False)


def test_examples_of_checkpoints_with_one_file_name_keep_apart(tmp_path):
    first = examples_path(tmp_path, "runs/spark/backbone.pt", 0.05, 0)
    second = examples_path(tmp_path, "runs/simclr/backbone.pt", 0.05, 0)
    assert first != second and first.name.startswith("backbone-") and second.name.startswith("backbone-")
    assert first == examples_path(tmp_path, "runs/spark/backbone.pt", 0.05, 0)  # the report finds it again
    assert examples_path(tmp_path, "random", 0.05, 1).name == "random-0.05-seed1.npz"
