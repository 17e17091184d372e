import inspect
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import yaml
from lightly.utils.benchmarking.knn import knn_predict
from PIL import Image

from medssl.checkpoints import CheckpointError
from medssl.checkpoints.export import export_backbone
from medssl.checkpoints.formats import CheckpointFormat
from medssl.downstream.cli import finetune_cli
from medssl.downstream.datamodule import TaskDataModule
from medssl.downstream.finetune import FineTune
from medssl.downstream.phantom_tasks import write_phantom_tasks
from medssl.models import build_backbone
from medssl.pretrain.knn_monitor import KNNMonitor

from conftest import task_counts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def organ(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft") / "tasks"
    return write_phantom_tasks(root, size=32, counts=task_counts(6, 1, 1), progress=False)["organ"]


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    torch.manual_seed(0)
    return export_backbone(build_backbone("resnet18"), tmp_path_factory.mktemp("bb") / "r18.pt",
                           method="byol", arch="resnet18")


@pytest.mark.slow
def test_finetune_cli_trains_selects_and_tests(organ, backbone_file, tmp_path, recwarn):
    cli = finetune_cli(args=[
        "fit", "--config", str(ROOT / "Downstream" / "configs" / "organsmnist.yaml"),
        "--data.path", str(organ), "--data.image_size", "32", "--data.batch_size", "16",
        "--data.num_workers", "0", "--model.arch", "resnet18",
        "--model.checkpoint", str(backbone_file), "--model.freeze_epochs", "1",
        "--trainer.max_epochs", "2", "--trainer.precision", "32-true", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    results = cli.model.test_results
    assert set(results) >= {"accuracy", "balanced_accuracy", "auc", "f1_macro", "confusion"}
    assert 0 <= results["accuracy"] <= 1 and len(results["confusion"]) == 7
    assert cli.model.load_report.format is CheckpointFormat.MEDSSL_EXPORT
    assert Path(cli.trainer.checkpoint_callback.best_model_path).name.startswith("best-")
    shown = [str(w.message) for w in recwarn]  # none of those a user cannot act on
    assert not [m for m in shown if "logging interval" in m or "already exist within another group" in m
                or "does not have many workers" in m], shown


class Snapshots(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_epoch_end(self, trainer, module):
        m = module.model
        self.seen.append({"conv1": m.conv1.weight.detach().clone(), "bn1": m.bn1.weight.detach().clone(),
                          "bn1_mean": m.bn1.running_mean.clone(), "fc": m.fc.weight.detach().clone(),
                          "groups": [g["lr"] for opt in trainer.optimizers for g in opt.param_groups],
                          "in_optimizer": [p for opt in trainer.optimizers for g in opt.param_groups
                                           for p in g["params"]]})


def folder_task(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    return TaskDataModule("folder", str(tmp_path / "data"), image_size=32, batch_size=8, num_workers=0)


def run(module, data, epochs=2, sanity_steps=0):
    snaps = Snapshots()
    start = {"conv1": module.model.conv1.weight.detach().clone(), "bn1": module.model.bn1.weight.detach().clone(),
             "bn1_mean": module.model.bn1.running_mean.clone(), "fc": module.model.fc.weight.detach().clone()}
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[snaps],
                         num_sanity_val_steps=sanity_steps)
    trainer.fit(module, data)
    return start, snaps.seen


@pytest.mark.slow
def test_backbone_frozen_then_trained_at_its_own_lr(tmp_path, backbone_file, recwarn):
    module = FineTune(num_classes=3, checkpoint=str(backbone_file), arch="resnet18", lr=1e-3,
                      freeze_epochs=1, backbone_lr=3e-5)
    start, seen = run(module, folder_task(tmp_path))
    assert not [w for w in recwarn if "already exist within another group" in str(w.message)]
    in_optimizer = seen[1]["in_optimizer"]  # every parameter once, BatchNorm's included
    assert len({id(p) for p in in_optimizer}) == len(in_optimizer) == len(list(module.parameters()))
    assert torch.equal(seen[0]["conv1"], start["conv1"])  # frozen in epoch 0
    assert not torch.equal(seen[0]["bn1"], start["bn1"])  # BatchNorm affine trains meanwhile
    assert not torch.equal(seen[0]["fc"], start["fc"])
    assert not torch.equal(seen[1]["conv1"], seen[0]["conv1"])  # unfrozen from epoch 1
    assert seen[1]["groups"] == [1e-3, 3e-5]  # the backbone's explicit learning rate


@pytest.mark.slow
def test_a_backbone_frozen_for_every_epoch_never_trains(tmp_path, backbone_file):
    module = FineTune(num_classes=3, checkpoint=str(backbone_file), arch="resnet18", lr=1e-3,
                      freeze_epochs=2, backbone_lr=3e-5)
    start, seen = run(module, folder_task(tmp_path), epochs=2)
    assert torch.equal(seen[-1]["conv1"], start["conv1"])
    assert not torch.equal(seen[-1]["bn1"], start["bn1"]) and not torch.equal(seen[-1]["fc"], start["fc"])
    assert seen[-1]["groups"] == [1e-3]  # no backbone group was ever added


def test_the_schedule_ablations_change_one_setting_of_the_quick_schedule():
    configs = ROOT / "Downstream" / "configs"
    quick = yaml.safe_load((configs / "finetune_quick.yaml").read_text())
    frozen = yaml.safe_load((configs / "finetune_quick_frozen.yaml").read_text())
    slower_backbone = yaml.safe_load((configs / "finetune_quick_backbone_lr.yaml").read_text())
    assert frozen == {**quick, "model": {**quick["model"], "freeze_epochs": quick["trainer"]["max_epochs"]}}
    assert slower_backbone == {**quick, "model": {**quick["model"], "backbone_lr": 1e-5}}
    assert inspect.signature(FineTune).parameters["lr"].default == 1e-4  # the head's: ten times the backbone's


def test_wrong_architecture_fails_before_training(backbone_file):
    with pytest.raises(CheckpointError, match=r"holds a resnet18 backbone.*resnet50 was asked for.*"
                                              r"--model.arch resnet18"):
        FineTune(num_classes=2, checkpoint=str(backbone_file), arch="resnet50")


def test_the_architecture_comes_from_the_checkpoint(backbone_file):
    model = FineTune(num_classes=3, checkpoint=str(backbone_file))  # the file holds a resnet18
    assert model.arch == "resnet18" and model.model.fc.in_features == 512
    assert FineTune(num_classes=3).arch == "resnet50"  # random init, nothing to read it from


def test_training_fraction_takes_a_stratified_subset(tmp_path):
    data = folder_task(tmp_path)
    data.hparams.fraction = 0.25
    data.load()
    labels = data.task.splits["train"].labels[data.train_indices]
    assert len(data.train_indices) < len(data.task.splits["train"])
    assert set(np.bincount(labels)) == {2}  # the floor of 2 per class


def test_per_class_takes_that_many_images_of_each_class_from_the_fractions_order(tmp_path):
    data = folder_task(tmp_path)
    counts = np.bincount(data.load().splits["train"].labels)
    data.task, data.hparams.per_class = None, 1
    one = data.load() and data.train_indices
    data.task, data.hparams.per_class, data.hparams.fraction = None, None, 0.01
    floor = data.load() and data.train_indices  # the floor of 2 per class: the same seeded order
    assert len(one) == len(counts) and set(np.bincount(data.task.splits["train"].labels[one])) == {1}
    assert set(one) < set(floor)
    with pytest.raises(ValueError, match="per_class 3: .* no fraction beside it"):
        TaskDataModule("folder", str(tmp_path / "data"), per_class=3, fraction=0.5)
    with pytest.raises(ValueError, match="per_class 0"):
        TaskDataModule("folder", str(tmp_path / "data"), per_class=0)


@pytest.mark.parametrize("mode", ["knn", "linear"])
def test_frozen_modes_train_nothing_and_classify_the_features(mode, tmp_path, backbone_file):
    yy, xx = np.mgrid[0:16, 0:16]
    patterns = {"a": (xx // 2) % 2, "b": (yy // 2) % 2, "c": ((xx // 4 + yy // 4) % 2)}
    rng = np.random.default_rng(0)
    for label, pattern in patterns.items():  # textures that even an untrained network separates
        (tmp_path / "knn" / label).mkdir(parents=True)
        for i in range(8):
            image = pattern * 200 + rng.integers(0, 30, (16, 16))
            Image.fromarray(image.astype(np.uint8)).save(tmp_path / "knn" / label / f"{i}.png")
    data = TaskDataModule("folder", str(tmp_path / "knn"), image_size=32, batch_size=8, num_workers=0)
    module = FineTune(num_classes=3, checkpoint=str(backbone_file), arch="resnet18", mode=mode, knn_k=3)
    start, seen = run(module, data, epochs=3, sanity_steps=2)  # the sanity check comes before any features
    assert len(seen) == 1 and seen[0]["groups"] == []  # one pass, no optimiser
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(module, data, verbose=False)
    assert module.test_results["accuracy"] == 1.0
    for key in ("conv1", "bn1", "bn1_mean", "fc"):
        current = {"conv1": module.model.conv1.weight, "bn1": module.model.bn1.weight,
                   "bn1_mean": module.model.bn1.running_mean, "fc": module.model.fc.weight}[key]
        assert torch.equal(current.detach(), start[key]), key


def test_every_data_option_reaches_the_task(tmp_path):
    folder_task(tmp_path)
    cli = finetune_cli(args=["--data.kind", "folder", "--data.path", str(tmp_path / "data"),
                             "--data.test_fraction", "0.5", "--data.val_fraction", "0.25",
                             "--model.arch", "resnet18", "--trainer.logger", "false"], run=False)
    splits = cli.datamodule.load().splits
    assert (len(splits["test"]), len(splits["val"]), len(splits["train"])) == (12, 6, 6)


def test_the_monitor_and_the_knn_mode_are_one_knn():
    """The pre-training monitor and the downstream knn mode predict the same classes from the same
    features, and that is lightly's knn_predict (exp(cosine / temperature)-weighted top-k vote)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g)
    bank_labels, query_labels = torch.arange(60) % 3, torch.arange(40) % 3
    bank = F.normalize(centres[bank_labels] + 1.5 * torch.randn(60, 16, generator=g), dim=1)
    query = F.normalize(centres[query_labels] + 1.5 * torch.randn(40, 16, generator=g), dim=1)

    monitor = KNNMonitor("labelled.npz", k=5, temperature=0.1).predict(bank, bank_labels, query, 3)
    module = FineTune(num_classes=3, arch="resnet18", mode="knn", knn_k=5, knn_temperature=0.1)
    module.train_features = [(bank[:32], bank_labels[:32]), (bank[32:], bank_labels[32:])]  # per batch
    probabilities = module.fit_classifier().probabilities(query)

    assert torch.equal(probabilities.argmax(1), monitor)
    assert torch.equal(monitor, knn_predict(query, bank.T, bank_labels, 3, 5, 0.1)[:, 0])
    assert torch.allclose(probabilities.sum(1), torch.ones(40))
    assert 0.5 < float((monitor == query_labels).float().mean()) < 1  # neighbours that disagree
