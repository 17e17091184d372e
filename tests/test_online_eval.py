"""Online evaluation during pre-training: the linear probe on detached features and the
embedding picture (medssl/pretrain/online_eval.py)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.datamodule import SliceStoreDataModule
from medssl.pretrain.labelled_set import LabelledSetCallback
from medssl.pretrain.methods import MoCoV2, method
from medssl.pretrain.online_eval import EmbeddingPicture, OnlineLinearProbe, project_2d

from conftest import phantom_store, run_two_process_ddp, task_counts

VIEWS = [{"size": 32, "count": 2, "scale": [0.5, 1.0], "mean": [0.25], "std": [0.32]}]
EPOCHS = 2


def separable_npz(path: Path, per_class: int = 16) -> Path:
    """Three classes told apart by brightness (MedMNIST layout): even a random backbone's
    features separate them."""
    rng = np.random.default_rng(0)

    def part(n):
        labels = np.repeat(np.arange(3), n)
        images = 40 + 80 * labels[:, None, None] + rng.normal(0, 10, (len(labels), 28, 28))
        return images.clip(0, 255).astype(np.uint8), labels[:, None].astype(np.uint8)

    (train_x, train_y), (test_x, test_y) = part(per_class), part(per_class // 2)
    np.savez(path, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y)
    return path


class BackboneGrads(pl.Callback):
    """The backbone's gradients after every backward pass."""

    def __init__(self):
        self.steps = []

    def on_after_backward(self, trainer, module):
        self.steps.append({k: p.grad.clone() for k, p in module.backbone.named_parameters()})


def fit(store, root: Path, monitors: list) -> tuple[pl.Trainer, MoCoV2, BackboneGrads]:
    pl.seed_everything(0)
    grads = BackboneGrads()
    module = MoCoV2(arch="resnet18", hidden_dim=32, out_dim=8, queue_length=16,
                    optimizer=MoCoV2.OPTIMIZER.replace(warmup_epochs=0).as_dict())  # plain for TensorBoard
    data = SliceStoreDataModule(str(store), views=VIEWS, batch_size=4, num_workers=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, limit_train_batches=2,
                         logger=TensorBoardLogger(root, name="", version=""), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                         callbacks=[grads, *monitors])
    trainer.fit(module, data)
    return trainer, module, grads


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=2, size=32)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return separable_npz(tmp_path_factory.mktemp("labelled") / "separable.npz")


@pytest.fixture(scope="module")
def runs(store, labelled, tmp_path_factory):
    """The same seeded run twice: without monitors, and with the probe and the picture."""
    probe, picture = OnlineLinearProbe(str(labelled)), EmbeddingPicture(str(labelled))
    plain = fit(store, tmp_path_factory.mktemp("plain"), [])
    monitored = fit(store, tmp_path_factory.mktemp("monitored"), [probe, picture])
    return {"plain": plain, "monitored": monitored, "probe": probe, "picture": picture}


def test_probe_gradients_never_reach_the_backbone(runs):
    (_, plain, plain_grads), (trainer, monitored, grads) = runs["plain"], runs["monitored"]
    probe = runs["probe"]
    assert len(grads.steps) == len(plain_grads.steps) == 2 * EPOCHS
    for step, (with_probe, without) in enumerate(zip(grads.steps, plain_grads.steps)):
        for name, grad in without.items():
            assert torch.equal(with_probe[name], grad), (step, name)  # steps after the probe trained too
    for name, weight in plain.backbone.state_dict().items():
        assert torch.equal(monitored.backbone.state_dict()[name], weight), name  # BatchNorm statistics too
    head = {id(p) for p in probe.head.parameters()}
    assert {id(p) for group in probe.optimizer.param_groups for p in group["params"]} == head
    assert not head & {id(p) for o in trainer.optimizers for g in o.param_groups for p in g["params"]}


def test_probe_learns_a_separable_set_and_logs_its_accuracy(runs):
    trainer, probe = runs["monitored"][0], runs["probe"]
    assert [h["epoch"] for h in probe.history] == list(range(EPOCHS))
    chance = 1 / 3
    last = probe.history[-1]
    assert last["train_accuracy"] > chance + 0.4 and last["val_accuracy"] > chance + 0.4, probe.history
    assert float(trainer.callback_metrics["probe/val_accuracy"]) == pytest.approx(last["val_accuracy"])
    assert float(trainer.callback_metrics["probe/train_accuracy"]) == pytest.approx(last["train_accuracy"])
    untrained = OnlineLinearProbe(probe.data, seed=probe.seed)
    untrained.sets = probe.sets
    untrained.build(runs["monitored"][1])
    bank = torch.randn(30, runs["monitored"][1].feature_dim)
    assert not torch.equal(untrained.head(bank), probe.head(bank))  # it moved


def test_embedding_png_and_tensorboard_figure(runs):
    trainer, picture = runs["monitored"][0], runs["picture"]
    assert picture.path == Path(trainer.log_dir) / "embedding.png"
    assert picture.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(trainer.log_dir).Reload()
    assert "embedding" in events.Tags()["images"]
    (image,) = events.Images("embedding")
    assert image.step == trainer.global_step and image.width > 100


def drawn_legend(data: Path, monkeypatch, tmp_path) -> list[str]:
    """The legend texts of the figure that ``EmbeddingPicture.draw`` saves for the labelled set
    ``data`` (random features; the figure caught at ``savefig``, nothing written)."""
    from matplotlib.figure import Figure

    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **_: saved.append(
        [t.get_text() for t in fig.axes[0].get_legend().get_texts()]))
    picture = EmbeddingPicture(str(data))
    picture.setup(SimpleNamespace(datamodule=None), None)
    (_, bank_y), (_, query_y) = picture.sets["bank"], picture.sets["query"]
    labels = torch.cat([bank_y, query_y]).numpy()
    features = np.random.default_rng(0).normal(size=(len(labels), 8))
    picture.draw(SimpleNamespace(global_step=3, loggers=[]), features, labels, len(bank_y), tmp_path / "embedding.png")
    (legend,) = saved
    return legend


def test_the_legend_names_the_classes_of_the_phantom_organ_task(monkeypatch, tmp_path):
    from medssl.downstream.phantom_tasks import ORGAN_CLASSES, write_phantom_tasks

    organ = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(3, 1, 1), progress=False)["organ"]
    assert drawn_legend(organ, monkeypatch, tmp_path) == list(ORGAN_CLASSES)


def test_the_legend_numbers_the_classes_of_an_npz_without_names(labelled, monkeypatch, tmp_path):
    assert drawn_legend(labelled, monkeypatch, tmp_path) == ["0", "1", "2"]


def test_nothing_happens_without_a_labelled_set(runs, store, tmp_path):
    trainer = runs["plain"][0]
    assert not [k for k in trainer.callback_metrics if k.startswith("probe/")]
    assert not list(Path(trainer.log_dir).glob("*.png"))
    assert EventAccumulator(trainer.log_dir).Reload().Tags()["images"] == []
    cli = pretrain_cli("mocov2", args=["--config", str(method("mocov2").quick_config), "--data.store", str(store),
                                       "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert not [c for c in cli.trainer.callbacks if isinstance(c, LabelledSetCallback)]


@pytest.mark.slow
def test_probe_state_survives_a_checkpoint_and_a_resume(store, labelled, tmp_path):
    args = ["fit", "--config", str(method("mocov2").quick_config), "--data.store", str(store),
            "--data.batch_size", "4", "--data.num_workers", "0", "--data.views", str(VIEWS),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.limit_train_batches", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.callbacks+=medssl.pretrain.online_eval.OnlineLinearProbe",
            "--trainer.callbacks.data", str(labelled), "--trainer.callbacks.steps", "5"]
    first = pretrain_cli("mocov2", args=[*args, "--trainer.max_epochs", "1"])
    probe = next(c for c in first.trainer.callbacks if isinstance(c, OnlineLinearProbe))
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"][probe.state_key]
    fresh = OnlineLinearProbe(str(labelled))
    fresh.load_state_dict(saved)
    fresh.sets = probe.sets
    fresh.build(first.model)
    assert fresh.history == probe.history and len(fresh.history) == 1
    for name, value in probe.head.state_dict().items():
        assert torch.equal(fresh.head.state_dict()[name], value), name
    momentum = [s["momentum_buffer"] for s in probe.optimizer.state_dict()["state"].values()]
    assert momentum and all(torch.equal(a, b) for a, b in zip(
        momentum, [s["momentum_buffer"] for s in fresh.optimizer.state_dict()["state"].values()]))

    resumed = pretrain_cli("mocov2", args=[*args, "--trainer.max_epochs", "2"])
    again = next(c for c in resumed.trainer.callbacks if isinstance(c, OnlineLinearProbe))
    assert again.history[0] == probe.history[0] and [h["epoch"] for h in again.history] == [0, 1]


@pytest.mark.slow
def test_monitors_of_one_set_share_one_pass_per_step(store, labelled, tmp_path, monkeypatch):
    from medssl.pretrain.knn_monitor import KNNMonitor

    passes = []
    one_pass = LabelledSetCallback.features

    def counted(self, trainer, module, images):
        passes.append((trainer.global_step, len(images)))
        return one_pass(self, trainer, module, images)

    monkeypatch.setattr(LabelledSetCallback, "features", counted)
    knn, probe, picture = (cls(str(labelled)) for cls in (KNNMonitor, OnlineLinearProbe, EmbeddingPicture))
    fit(store, tmp_path, [knn, probe, picture])
    whole_set = sum(len(y) for _, y in probe.sets.values())
    assert passes == [(2, whole_set), (4, whole_set)]  # each epoch's end; the picture re-uses the last
    assert len(knn.history) == len(probe.history) == EPOCHS and picture.path.exists()
    monkeypatch.undo()
    alone = KNNMonitor(str(labelled))
    fit(store, tmp_path / "alone", [alone])
    assert knn.history == alone.history  # the shared features are its own pass's


@pytest.mark.slow
def test_under_ddp_every_rank_trains_the_same_probe_and_one_picture_is_drawn(store, labelled, tmp_path):
    rank0, rank1 = run_two_process_ddp(
        store, tmp_path, "MoCoV2(arch='resnet18', hidden_dim=32, out_dim=8, queue_length=16)", VIEWS,
        callbacks=f"[OnlineLinearProbe({str(labelled)!r}), EmbeddingPicture({str(labelled)!r})]")
    (probe0,), (probe1,) = rank0["probes"], rank1["probes"]
    assert len(probe0["history"]) == 1 and probe0["history"] == probe1["history"]  # all-gathered features
    for key, value in probe0["head"].items():
        assert torch.equal(value, probe1["head"][key]), key
    assert [p.name for p in tmp_path.rglob("*.png")] == ["embedding.png"]  # rank 0 only


def test_project_2d_uses_pca_for_tiny_sets():
    rng = np.random.default_rng(0)
    points, how = project_2d(rng.normal(size=(5, 16)))
    assert how == "PCA" and points.shape == (5, 2)
    points, how = project_2d(rng.normal(size=(24, 16)))
    assert how == "t-SNE" and points.shape == (24, 2) and np.isfinite(points).all()
    with pytest.raises(ValueError, match="at least 2 images"):
        project_2d(rng.normal(size=(1, 16)))
