"""A new method is one module, its configs and one registry line: the command line, the
benchmarks and the tests that go over the registry then know it. Proved here with a throwaway
method registered from inside the test, trained through the scripts' own entry."""
import re
from pathlib import Path

import pytest
import torch

from medssl.checkpoints import load_backbone
from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import (
    BYOL,
    DINO,
    METHODS,
    MoCoV2,
    MomentumMethod,
    OptimizerConfig,
    PretrainMethod,
    method,
    method_names,
    register_method,
    unregister_method,
)

from conftest import phantom_store
from registered import build

ROOT = Path(__file__).resolve().parents[1]
QUICK_CONFIG = """
trainer: {max_epochs: 1, accelerator: cpu, devices: 1, precision: 32-true}
model:
  arch: resnet18
  optimizer: {lr: 0.01}
data:
  batch_size: 8
  num_workers: 0
  intensity: {mode: full}
  views:
    - {size: 32, count: 1, scale: [0.5, 1.0]}
"""


class PredictTheMean(PretrainMethod):
    """Predicts each view's mean intensity from its features: the smallest method there is.

    Args:
        scale: weight of the loss.
        optimizer: optimiser and learning-rate schedule.
        **kwargs: ``arch``, ``channels_last``, ``compile``.
    """

    method_name = "predict_the_mean"
    OPTIMIZER = OptimizerConfig(name="sgd", lr=0.05)
    TINY = dict(scale=0.5)

    def __init__(self, scale: float = 1.0, optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        self.head = torch.nn.Linear(self.feature_dim, 1)

    def training_loss(self, batch):
        (images,) = self.views_to_device_format(batch[:1])
        target = images.mean(dim=(1, 2, 3))
        prediction = self.head(self.backbone(images)).squeeze(1)
        return self.hparams.scale * torch.nn.functional.mse_loss(prediction, target), {}


@pytest.fixture
def registered(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    for name in ("predict_the_mean.yaml", "predict_the_mean_quick.yaml"):
        (configs / name).write_text(QUICK_CONFIG)
    entry = register_method(PredictTheMean, config_dir=configs)
    yield entry
    unregister_method(entry.name)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=2, size=32)


def test_the_project_methods_are_registered_with_their_configs():
    assert method_names()[:4] == ["swav", "mocov2", "byol", "spark"]
    for name in method_names():
        entry = method(name)
        assert entry.cls.method_name == name
        assert "TINY" in vars(entry.cls), f"{name}: no TINY settings of its own (the tests would build it full size)"
        assert entry.config.is_file() and entry.quick_config.is_file()
        assert entry.data_config(quick=True)["views"]
    with pytest.raises(ValueError, match="registered: swav, mocov2"):
        method("simsiam")


def test_a_registered_method_trains_through_the_command_line_and_is_benchmarked(registered, store, tmp_path):
    cli = pretrain_cli("predict_the_mean", args=[
        "fit", "--config", str(registered.quick_config), "--data.store", str(store),
        "--trainer.max_steps", "2", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    assert cli.trainer.global_step == 2
    assert cli.model.optimizer_config == OptimizerConfig(name="sgd", lr=0.01)  # the config's change
    exported = tmp_path / "run" / "predict_the_mean_backbone.pt"
    model, report = load_backbone(exported, arch=None)
    assert report.method == "predict_the_mean" and report.arch == "resnet18"
    assert torch.equal(model.conv1.weight, cli.model.backbone.conv1.weight)

    from benchmarks import common
    from benchmarks import train_throughput as throughput

    assert "predict_the_mean" in common.methods()
    assert common.quick_config("predict_the_mean") == registered.quick_config  # its own config folder
    assert "predict_the_mean" in throughput.method_names()
    assert throughput.baseline("predict_the_mean") == "supervised"
    assert throughput.view_shapes("predict_the_mean", 64) == [64]
    unregister_method("predict_the_mean")
    assert "predict_the_mean" not in common.methods()


def test_the_guide_lists_what_the_throwaway_method_touched(registered):
    """docs/adding-a-method.md's list is what this file's method needed: its class attributes and
    loss, two configs, one registry line (the rest of the list is documentation)."""
    text = (ROOT / "docs" / "adding-a-method.md").read_text()
    section = text.split("## What a new method touches")[1].split("\n## ")[0]
    steps = re.findall(r"^\d+\. (.*?)(?=^\d+\. |\n\n)", section, flags=re.M | re.S)
    assert len(steps) == 4, section
    named = set(re.findall(r"`(\w+)`", steps[0]))
    assert named == {"method_name", "OPTIMIZER", "TINY", "training_loss"}
    assert all(name in vars(PredictTheMean) for name in named)
    assert "`Pre-Training/configs/<name>.yaml` and `<name>_quick.yaml`" in steps[1]
    assert registered.config.name == "predict_the_mean.yaml" and registered.quick_config.is_file()
    assert "register_method(...)" in steps[2] and method("predict_the_mean") is registered
    assert build("predict_the_mean").head.in_features == 512  # the tests build it with its TINY settings
    assert build("predict_the_mean").hparams.scale == 0.5


def test_registering_another_class_under_a_taken_name_is_refused():
    class Impostor(PretrainMethod):
        method_name = "swav"

    with pytest.raises(ValueError, match="already registered"):
        register_method(Impostor)
    assert METHODS["swav"].cls.__name__ == "SwAV"


def test_a_method_registered_by_its_import_path_is_imported_when_used_and_must_bear_its_name():
    entry = register_method("medssl.pretrain.methods.simclr:SimCLR", name="contrastive")
    try:
        with pytest.raises(ValueError, match="registered as 'contrastive' but names itself 'simclr'"):
            entry.cls
    finally:
        unregister_method("contrastive")
    with pytest.raises(ValueError, match="give 'module:Class' and name="):
        register_method("medssl.pretrain.methods.simclr:SimCLR")
    with pytest.raises(ValueError, match="already registered: medssl.pretrain.methods.swav:SwAV"):
        register_method("medssl.pretrain.methods.byol:BYOL", name="swav")
    assert method("swav").cls is register_method("medssl.pretrain.methods.swav:SwAV", name="swav").cls


@pytest.mark.parametrize("cls", [BYOL, MoCoV2, DINO])  # DINO: a head deepcopy refuses, built twice
def test_momentum_methods_declare_their_pairs_with_unchanged_state_dict_names(cls):
    module = cls(arch="resnet18", hidden_dim=32, out_dim=8)
    assert isinstance(module, MomentumMethod)
    assert module.momentum_pairs == ("backbone", "projection_head")
    keys = module.state_dict().keys()
    assert "backbone_momentum.conv1.weight" in keys and "projection_head_momentum.layers.0.weight" in keys
    assert not any(p.requires_grad for p in module.backbone_momentum.parameters())


def test_optimizer_settings_are_one_group_with_each_method_defaults():
    assert BYOL.OPTIMIZER.name == "adam" and MoCoV2.OPTIMIZER.name == "sgd"
    module = BYOL(arch="resnet18", hidden_dim=32, out_dim=8,
                  optimizer=BYOL.OPTIMIZER.replace(warmup_epochs=0))
    assert module.optimizer_config.lr == 1e-3 and module.optimizer_config.warmup_epochs == 0
    assert module.hparams.optimizer == {**BYOL.OPTIMIZER.as_dict(), "warmup_epochs": 0}  # plain types
    assert OptimizerConfig.of(module.hparams.optimizer) == module.optimizer_config
    assert module.hparams_initial.optimizer == module.hparams.optimizer  # what loggers are given
    with pytest.raises(ValueError, match="optimizer must be one of"):
        OptimizerConfig(name="rmsprop")


def test_a_method_built_in_python_with_its_optimizer_settings_logs_to_tensorboard(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    module = BYOL(arch="resnet18", hidden_dim=32, out_dim=8, optimizer=OptimizerConfig(name="sgd", lr=0.01))
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams(module.hparams_initial)  # what the trainer does at the start of fit
    logger.save()  # a frozen dataclass here failed: "not allowed" in apply_to_collection
    written = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert "name: sgd" in written and "lr: 0.01" in written


def test_configs_are_found_from_the_working_directory_or_the_setting(tmp_path, monkeypatch):
    from medssl.pretrain.methods.registry import CONFIGS_ENV, method

    monkeypatch.delenv(CONFIGS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert method("swav").config == tmp_path.resolve() / "Pre-Training" / "configs" / "swav.yaml"
    monkeypatch.setenv(CONFIGS_ENV, str(tmp_path / "mine"))
    assert method("byol").quick_config == (tmp_path / "mine" / "byol_quick.yaml").resolve()
