import json
import subprocess
import sys
from pathlib import Path

import pytest

from medssl.pretrain.overhead import BASELINES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_suite_writes_json_and_markdown(tmp_path):
    # the smallest run: 1 warm-up + 1 timed step of batch 2, every module in one process
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--arch", "resnet18", "--size", "64",
         "--batch", "2", "--warmup", "1", "--steps", "1", "--rounds", "1", "--repeats", "1", "--one-process",
         "--sections", "train", "ingest", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)  # about 4 minutes on 2 busy cores
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*-quick.json")]
    assert report["command"].startswith("python -m benchmarks.run --quick")
    assert report["torch"] and report["device"] and report["date"]

    train = report["sections"]["train"]
    assert train["status"] == "ok" and train["supervised"]["images_per_s"] > 0
    assert {m: r["baseline"] for m, r in train["methods"].items()} == BASELINES  # every method has its bare passes
    for result in train["methods"].values():
        assert result["images_per_s"] > 0 and result["baseline_images_per_s"] > 0
        assert result["peak_memory_mib"] > 0 and result["ratio"] > 0
        assert result["goal_result"]["passed"] in (True, False)

    ingest = report["sections"]["ingest"]
    assert ingest["status"] == "ok" and ingest["slices"] > 0
    assert len(ingest["slices_per_s"]) == 3 and all(v > 0 for v in ingest["slices_per_s"].values())

    text = (tmp_path / f"{report['machine']}.md").read_text()
    for name in ("supervised", *BASELINES, *BASELINES.values()):
        assert f"| {name} |" in text
    assert "original_png8_single_process" in text and report["command"] in text


def test_bare_passes_run_the_method_backbone_and_projection_head_without_its_loss():
    import torch

    from medssl.pretrain.methods import MoCoV2
    from medssl.pretrain.overhead import bare_passes

    def shapes(module):
        return [tuple(p.shape) for p in module.parameters()]

    bare = bare_passes("mocov2", "resnet18")
    real = MoCoV2(arch="resnet18")
    assert shapes(bare.head) == shapes(real.projection_head) == shapes(bare.head_momentum)
    assert shapes(bare.backbone) == shapes(bare.backbone_momentum) == shapes(real.backbone)
    assert not any(p.requires_grad for p in bare.head_momentum.parameters())
    loss, _ = bare.training_loss([torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)])
    loss.backward()
    assert bare.head.layers[0].weight.grad.abs().sum() > 0 and bare.backbone.conv1.weight.grad.abs().sum() > 0
    supervised = bare_passes("supervised", "resnet18")
    assert isinstance(supervised.head, torch.nn.Linear) and supervised.backbone_momentum is None


def test_data_pipeline_benchmark_compares_the_same_views(tmp_path):
    from benchmarks import data_pipeline

    views = data_pipeline.mocov2_views(32)
    blur = [type(step.transforms[0]).__name__ for step in data_pipeline.study_views(views).pipelines[0][0].transforms
            if type(step).__name__ == "RandomApply"]
    assert "GaussianBlur" in blur and "RandomGaussianBlur" not in blur  # torchvision's own
    result = data_pipeline.measure(slices=8, size=32, workers=0, repeats=1, batch_size=4, views=views,
                                   slice_size=64)
    assert result["slices"] == 8 and result["views_per_image"] == 2
    for key in ("store_views_per_s", "png_views_per_s", "png_ours_views_per_s"):
        assert result[key] > 0
    assert result["ratio"] == result["store_views_per_s"] / result["png_views_per_s"]


def test_sync_batchnorm_benchmark_times_both_kinds_on_two_processes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sync_batchnorm", "--size", "32", "--batch", "2",
                           "--steps", "1", "--rounds", "1", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("sync_batchnorm-*.json")).read_text())
    assert set(report["seconds_per_step"]) == {"plain", "sync-free"}
    assert all(t > 0 for t in report["seconds_per_step"].values())
    assert report["host_reads_per_step"] == {"plain": 0, "sync-free": 0}
    assert (tmp_path / next(tmp_path.glob("sync_batchnorm-*.json")).with_suffix(".md").name).exists()


PEER_EXAMPLE = '''
import pytorch_lightning as pl
import torch
import torchvision
from torch import nn
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead


class SimCLR(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(*list(torchvision.models.resnet18().children())[:-1])
        self.projection_head = SimCLRProjectionHead(512, 2048, 2048)
        self.criterion = NTXentLoss()

    def training_step(self, batch, batch_index):
        x0, x1 = batch[0]
        z0 = self.projection_head(self.backbone(x0).flatten(start_dim=1))
        z1 = self.projection_head(self.backbone(x1).flatten(start_dim=1))
        return self.criterion(z0, z1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.06)


raise SystemExit("the example's training ran")  # a script's module-level work: never run
'''


def test_peers_benchmark_times_an_example_module_without_running_its_script(tmp_path):
    (tmp_path / "simclr.py").write_text(PEER_EXAMPLE)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--lightly", str(tmp_path), "--methods", "simclr",
                           "--size", "32", "--batch", "2", "--warmup", "1", "--steps", "1", "--rounds", "2",
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next((tmp_path / "out").glob("peers-lightly-*.json")).read_text())
    (row,) = report["rows"]
    assert row["method"] == "simclr" and len(row["rounds"]["ours"]) == len(row["rounds"]["theirs"]) == 2
    assert row["ratio"] == row["ours_s"] / row["theirs_s"] and row["goal"] in ("PASS", "MISS")


SOLO_METHODS = '''
import torch
import pytorch_lightning as pl
import torchvision

STEPS = []


class BYOL(pl.LightningModule):
    """solo-learn's shape: a method built from a config; training_step takes [indexes, views, targets];
    a momentum updater stepped outside the training step."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.backbone = torchvision.models.resnet18(num_classes=cfg.method_kwargs.proj_output_dim)
        self.momentum_backbone = torchvision.models.resnet18(num_classes=cfg.method_kwargs.proj_output_dim)
        self.momentum_updater = Updater()
        self.started = False

    @staticmethod
    def add_and_assert_specific_cfg(cfg):
        assert cfg.data.num_large_crops == 2 and cfg.optimizer.batch_size == 2
        return cfg

    @property
    def momentum_pairs(self):
        return [(self.backbone, self.momentum_backbone)]

    def on_train_start(self):
        assert self.trainer is None  # no Trainer: world size 1
        self.started = True

    def training_step(self, batch, batch_idx):
        indexes, views, targets = batch
        assert self.started and len(views) == 2 and targets.shape == indexes.shape == (2,)
        STEPS.append(batch_idx)
        z = [self.backbone(v) for v in views]
        return -torch.nn.functional.cosine_similarity(z[0], z[1]).mean()

    def configure_optimizers(self):
        assert self.cfg.scheduler.name == "none"
        return torch.optim.SGD(self.parameters(), lr=self.cfg.optimizer.lr, **self.cfg.optimizer.kwargs)


class Updater:
    updates = 0

    def update(self, online, momentum):
        Updater.updates += 1

    def update_tau(self, cur_step, max_steps):
        assert cur_step < max_steps and Updater.updates == cur_step + 1
        with open(__file__ + ".steps", "a") as steps:
            steps.write(f"{cur_step}\\n")
'''


def test_peers_benchmark_steps_a_solo_learn_method_from_its_config(tmp_path):
    methods = tmp_path / "solo-learn" / "solo" / "methods"
    methods.mkdir(parents=True)
    (methods.parent / "__init__.py").write_text("")
    (methods / "__init__.py").write_text(SOLO_METHODS)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--solo-learn", str(tmp_path / "solo-learn"),
                           "--methods", "byol", "--size", "32", "--batch", "2", "--warmup", "1", "--steps", "1",
                           "--rounds", "2", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next((tmp_path / "out").glob("peers-solo-learn-*.json")).read_text())
    (row,) = report["rows"]
    assert report["peer"] == "solo-learn" and row["module"] == "BYOL" and len(row["rounds"]["theirs"]) == 2
    assert "online linear classifier" in " ".join(row["differences"])
    # the teacher follows every step: 1 warm-up step and 2 rounds of 1
    assert (methods / "__init__.py.steps").read_text().split() == ["0", "1", "2"]


def test_peers_benchmark_names_a_folder_that_is_not_the_peer(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--solo-learn", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and f"--solo-learn {tmp_path}: no solo/methods there" in proc.stderr
