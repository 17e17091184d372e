import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset

from medssl.pretrain import methods
from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import BYOL, MoCoV2, SwAV, method_names

from conftest import phantom_store, run_two_process_ddp, task_counts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=4, size=32)


def cli_args(name, store, root, *extra):
    """The method's quick config (its own views), batch 8, on the test's store."""
    return ["fit", "--config", str(methods.method(name).quick_config), "--data.store", str(store),
            "--data.batch_size", "8", "--data.num_workers", "0",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]


def exported(cli) -> Path:
    return Path(cli.trainer.log_dir) / f"{cli.model.method_name}_backbone.pt"


@pytest.mark.parametrize("method", method_names())
@pytest.mark.slow
def test_quick_config_trains_and_exports_a_torchvision_backbone(method, store, tmp_path):
    cli = pretrain_cli(method, args=cli_args(method, store, tmp_path, "--trainer.max_steps", "3"))
    assert cli.trainer.global_step == 3
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    payload = torch.load(exported(cli), weights_only=True)
    assert payload["method"] == method and payload["arch"] == "resnet18"
    assert payload["steps"] == 3
    manifest = (store / "manifest.csv").read_bytes()
    assert payload["store_manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert payload["config"]["data"]["batch_size"] == 8
    result = torchvision.models.resnet18().load_state_dict(payload["state_dict"], strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    assert torch.equal(payload["state_dict"]["conv1.weight"], cli.model.backbone.conv1.weight.cpu())
    assert list(Path(cli.trainer.log_dir).glob("events.out.tfevents.*"))  # TensorBoard by default


SEED_README_SNIPPET = '''
pre_train = "{method}"
pre_training_checkpoint = "{path}"
res_model = torchvision.models.resnet50()
state_dict = torch.load(pre_training_checkpoint)
if "module" in state_dict: # (SparK)
    state_dict = state_dict["module"]
if "state_dict" in state_dict: # (SwAV, MoCo, BYOL)
    state_dict = state_dict["state_dict"]
if pre_train == "SparK" or pre_train == "SwAV":
        state_dict = {{k.replace("model.", ""): v for k, v in state_dict.items()}}
elif pre_train == "MoCo":
    state_dict = {{k.replace("encoder_q.", ""): v for k, v in state_dict.items()}}
elif pre_train == "BYOL":
    state_dict = {{k.replace("online_network.encoder.", ""): v for k, v in state_dict.items()}}
pretrained_model = res_model.load_state_dict(state_dict, strict=False)
print(format(pretrained_model))
'''


@pytest.mark.slow
def test_resnet50_export_loads_with_the_seed_readme_snippet(store, tmp_path):
    cli = pretrain_cli("byol", args=cli_args("byol", store, tmp_path, "--model.arch", "resnet50",
                                           "--trainer.max_steps", "1"))
    path = exported(cli)
    for method in ("SwAV", "MoCo", "BYOL", "SparK"):
        scope = {"torch": torch, "torchvision": torchvision}
        exec(SEED_README_SNIPPET.format(method=method, path=path), scope)
        result = scope["pretrained_model"]
        assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
        assert torch.equal(scope["res_model"].layer4[2].conv3.weight,
                           cli.model.backbone.layer4[2].conv3.weight.cpu())


class FixedViews(Dataset):
    """The same views every time: a batch to overfit."""

    def __init__(self, n_views, size=32, n=8):
        g = torch.Generator().manual_seed(0)
        self.views = [torch.randn(n, 3, size, size, generator=g) for _ in range(n_views)]

    def __len__(self):
        return len(self.views[0])

    def __getitem__(self, i):
        return [v[i] for v in self.views]


class LossHistory(pl.Callback):
    def __init__(self):
        self.losses, self.lrs, self.steps_at_start = [], [], None

    def on_train_start(self, trainer, module):
        self.steps_at_start = trainer.global_step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


OVERFIT = {
    "swav": lambda: SwAV(arch="resnet18", hidden_dim=128, out_dim=32, n_prototypes=16,
                         freeze_prototypes_epochs=0,
                         optimizer=SwAV.OPTIMIZER.replace(name="adam", lr=1e-3, warmup_epochs=0)),
    "mocov2": lambda: MoCoV2(arch="resnet18", hidden_dim=128, out_dim=32, queue_length=0,
                             temperature=0.2, optimizer=MoCoV2.OPTIMIZER.replace(name="adam", lr=1e-3),
                             key_momentum=0.9),
    "byol": lambda: BYOL(arch="resnet18", hidden_dim=128, out_dim=32,
                         optimizer=BYOL.OPTIMIZER.replace(lr=1e-3, warmup_epochs=0)),
}


@pytest.mark.parametrize("method", list(OVERFIT))
@pytest.mark.slow
def test_loss_drops_when_overfitting_one_batch(method):
    pl.seed_everything(0)
    module = OVERFIT[method]()
    history = LossHistory()
    trainer = pl.Trainer(max_steps=25, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[history])
    trainer.fit(module, DataLoader(FixedViews(2), batch_size=8))
    assert all(math.isfinite(x) for x in history.losses)
    assert np.mean(history.losses[-5:]) < history.losses[0] - 0.05, history.losses


def test_lr_schedule_follows_warmup_and_cosine_over_the_real_steps(store, tmp_path):
    history = LossHistory()
    module = SwAV(arch="resnet18", hidden_dim=64, out_dim=16, n_prototypes=8,
                  optimizer=SwAV.OPTIMIZER.replace(lr=0.15, warmup_epochs=1, final_lr_ratio=0.01))
    from medssl.pretrain.datamodule import SliceStoreDataModule

    data = SliceStoreDataModule(str(store), views=[{"size": 16, "count": 2}], batch_size=8,
                                num_workers=0)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[history])
    trainer.fit(module, data)
    total, warmup = 12, 4  # 32 slices / batch 8 = 4 steps per epoch, 3 epochs
    assert len(history.lrs) == total
    for step, lr in enumerate(history.lrs):
        if step < warmup:
            want = 0.15 * (step + 1) / warmup
        else:
            t = (step - warmup) / (total - warmup - 1)
            want = 0.15 * (0.01 + (1 - 0.01) * (1 + math.cos(math.pi * t)) / 2)
        assert lr == pytest.approx(want, rel=1e-6), step


def test_byol_tau_follows_its_cosine_over_the_real_total_steps():
    module = BYOL(arch="resnet18", hidden_dim=64, out_dim=16, optimizer=BYOL.OPTIMIZER.replace(warmup_epochs=0))
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(FixedViews(2, n=8), batch_size=4))  # max_epochs is -1 here
    total = module.total_steps()
    assert total == 6
    for step in range(total):
        want = 1 - (1 - 0.996) * (math.cos(math.pi * step / (total - 1)) + 1) / 2
        assert module.tau(step) == pytest.approx(want)
    assert module.tau(0) == pytest.approx(0.996) and module.tau(total - 1) == 1.0


def test_a_max_time_run_stretches_its_schedules_over_the_steps_that_fit_in_its_time(monkeypatch):
    """A run limited by max_time only (max_epochs -1): with a clock at one second per step and
    10 seconds, the learning rate and BYOL's tau follow the very curves of a 10-step run."""
    from pytorch_lightning.callbacks import Timer

    def runs(**limits):
        history = LossHistory()
        module = BYOL(arch="resnet18", hidden_dim=64, out_dim=16,
                      optimizer=BYOL.OPTIMIZER.replace(warmup_epochs=0.5, final_lr_ratio=0.01))
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, callbacks=[history], **limits)
        taus = []
        module.after_optimizer_step = lambda: taus.append(module.ema_rate(module.global_step))
        trainer.fit(module, DataLoader(FixedViews(2, n=8), batch_size=2))  # 4 steps per epoch
        return history.lrs, taus

    monkeypatch.setattr(Timer, "time_elapsed", lambda self, interval="train": float(self._trainer.global_step))
    monkeypatch.setattr(Timer, "time_remaining", lambda self, interval="train": 10.0 - self._trainer.global_step)
    monkeypatch.setattr(Timer, "setup", lambda self, trainer, *a, **k: setattr(self, "_trainer", trainer))
    by_time = runs(max_epochs=-1, max_time={"seconds": 10})
    monkeypatch.undo()
    by_steps = runs(max_steps=10)
    assert len(by_time[0]) == len(by_steps[0]) == 10
    assert by_time[0] == pytest.approx(by_steps[0])  # warm-up 2 steps, then the cosine down to 1 %
    assert by_time[1] == pytest.approx(by_steps[1])
    assert by_time[0][-1] < 0.05 * max(by_time[0])


@pytest.mark.slow
def test_resume_continues_at_the_same_step_with_the_queue(store, tmp_path):
    args = cli_args("mocov2", store, tmp_path, "--trainer.max_steps", "2")
    first = pretrain_cli("mocov2", args=args)
    queue = first.model.criterion.memory_bank.bank.clone()
    last = Path(first.trainer.checkpoint_callback.last_model_path)
    assert last.name == "last.ckpt" and last.exists()
    checkpoint = torch.load(last, weights_only=True)  # our checkpoints hold plain types only
    assert checkpoint["global_step"] == 2 and checkpoint["medssl"]["method"] == "mocov2"
    history = LossHistory()
    second = pretrain_cli("mocov2", run=False, args=args[1:] + ["--trainer.max_steps", "4"])
    second.trainer.callbacks.append(history)
    restored = {}
    original_load = second.model.on_load_checkpoint

    def spy(checkpoint):
        original_load(checkpoint)
        restored["bank"] = second.model.criterion.memory_bank.bank.clone()

    second.model.on_load_checkpoint = spy
    second.trainer.fit(second.model, datamodule=second.datamodule, ckpt_path=str(last))
    assert history.steps_at_start == 2 and second.trainer.global_step == 4
    assert torch.equal(restored["bank"], queue)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_keeps_ranks_in_agreement(store, tmp_path):
    rank0, rank1 = run_two_process_ddp(
        store, tmp_path, "MoCoV2(arch='resnet18', hidden_dim=64, out_dim=16, queue_length=64,"
        " optimizer=MoCoV2.OPTIMIZER.replace(lr=0.05))",
        [{"size": 32, "count": 2}])
    assert torch.equal(rank0["params"]["backbone.conv1.weight"], rank1["params"]["backbone.conv1.weight"])
    queue = "criterion.memory_bank.bank"
    assert torch.equal(rank0["buffers"][queue], rank1["buffers"][queue])  # keys from both ranks


@pytest.mark.slow
def test_export_on_demand_from_a_checkpoint(store, tmp_path):
    cli = pretrain_cli("swav", args=cli_args("swav", store, tmp_path, "--trainer.max_steps", "2"))
    last = cli.trainer.checkpoint_callback.last_model_path
    out = tmp_path / "on_demand.pt"
    proc = subprocess.run([sys.executable, str(ROOT / "Pre-Training" / "export.py"), last,
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    at_end = torch.load(exported(cli), weights_only=True)
    on_demand = torch.load(out, weights_only=True)
    assert on_demand["method"] == "swav" and on_demand["steps"] == 2
    assert on_demand["store_manifest_sha256"] == at_end["store_manifest_sha256"]
    assert on_demand["state_dict"].keys() == at_end["state_dict"].keys()
    view = cli.datamodule.views_config[0]  # what the backbone was fed, for fine-tuning to feed it
    assert on_demand["input"] == at_end["input"] == {
        "intensity": dict(cli.datamodule.hparams.intensity), "units": "HU", "mean": view["mean"][0],
        "std": view["std"][0], "size": view["size"]}
    for key, value in at_end["state_dict"].items():
        assert torch.equal(on_demand["state_dict"][key], value), key


@pytest.mark.slow
def test_knn_monitor_logs_accuracy_on_a_labelled_set(store, tmp_path):
    from medssl.downstream.phantom_tasks import write_phantom_tasks

    tasks = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(6, 1, 1),
                                progress=False)
    cli = pretrain_cli("byol", args=cli_args(
        "byol", store, tmp_path, "--trainer.max_epochs", "2",
        "--trainer.callbacks+=medssl.pretrain.knn_monitor.KNNMonitor",
        "--trainer.callbacks.data", str(tasks["organ"]), "--trainer.callbacks.k", "5"))
    monitor = next(c for c in cli.trainer.callbacks if type(c).__name__ == "KNNMonitor")
    assert len(monitor.history) == 2 and all(0 <= a <= 1 for a in monitor.history)
    assert float(cli.trainer.callback_metrics["knn/accuracy"]) == monitor.history[-1]


def test_knn_sets_from_a_labelled_store(tmp_path):
    from medssl.data import SliceStoreWriter
    from medssl.data.intensity import HUToIntensity
    from medssl.pretrain.labelled_set import load_labelled

    rows = [{"source": f"s{i}", "patient_id": "p", "series_uid": f"s{i}", "modality": "CT",
             "slice_index": 0, "position_mm": 0.0, "spacing_row_mm": 1.0, "spacing_col_mm": 1.0,
             "label": "lesion" if i % 3 else "normal", "split": "train" if i < 6 else "test"}
            for i in range(9)]
    with SliceStoreWriter(tmp_path / "labelled", 8) as writer:
        for i, row in enumerate(rows):
            writer.add(np.full((1, 8, 8), 100 * i, np.int16), [row])
    sets = load_labelled(tmp_path / "labelled", HUToIntensity("window", level=400, width=800))
    assert sets["bank"][0].shape == (6, 1, 8, 8) and len(sets["query"][1]) == 3
    assert sets["bank"][1].tolist() == [1, 0, 0, 1, 0, 0]  # categories sorted: lesion, normal
    assert sets.class_names == ["lesion", "normal"]  # the embedding picture's legend
    assert float(sets["query"][0][-1].max()) == 1.0  # 800 HU at the top of the 0..800 window


def test_momentum_updates_once_per_optimizer_step_with_accumulation():
    class Counting(BYOL):
        updates = 0

        def after_optimizer_step(self):
            Counting.updates += 1
            super().after_optimizer_step()

    module = Counting(arch="resnet18", hidden_dim=32, out_dim=8, optimizer=BYOL.OPTIMIZER.replace(warmup_epochs=0))
    before = module.backbone_momentum.conv1.weight.clone()
    trainer = pl.Trainer(max_epochs=1, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, DataLoader(FixedViews(2, size=16, n=16), batch_size=4))  # 4 batches
    assert trainer.global_step == 2 and Counting.updates == 2
    assert not torch.equal(before, module.backbone_momentum.conv1.weight)


@pytest.mark.slow
def test_backbones_exported_as_training_time_passes_each_mark_and_after_a_resume(tmp_path, monkeypatch):
    """A clock at 30 s per step: marks at 1 and 2.5 minutes are written after steps 2 and 5, once
    each, also when the run stops after step 3 and resumes from its checkpoint."""
    import medssl.pretrain.callbacks as callbacks

    clock = {"now": 0.0}

    def tick():
        clock["now"] += 30.0 if clock.pop("started", True) else 0.0
        return clock["now"]

    monkeypatch.setattr(callbacks.time, "perf_counter", tick)

    def fit(max_steps, ckpt_path=None):
        module = BYOL(arch="resnet18", hidden_dim=64, out_dim=16)
        marks = callbacks.ExportAtMinutes([1, 2.5], dirpath=str(tmp_path / "backbones"))
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[marks],
                             max_steps=max_steps, default_root_dir=tmp_path)
        clock["started"] = False  # on_train_start reads the clock without a step passing
        trainer.fit(module, DataLoader(FixedViews(2, n=8), batch_size=2), ckpt_path=ckpt_path)
        return trainer, marks

    first, marks = fit(3)
    assert marks.written == [1.0] and marks.elapsed == 90.0
    one = tmp_path / "backbones" / "byol_backbone_1min.pt"
    assert torch.load(one, weights_only=True)["steps"] == 2
    first.save_checkpoint(tmp_path / "step3.ckpt")
    written_at = one.stat().st_mtime_ns
    _, marks = fit(6, ckpt_path=str(tmp_path / "step3.ckpt"))
    assert marks.written == [1.0, 2.5] and marks.elapsed == 180.0
    assert torch.load(tmp_path / "backbones" / "byol_backbone_2.5min.pt", weights_only=True)["steps"] == 5
    assert one.stat().st_mtime_ns == written_at  # not written again
    assert sorted(p.name for p in (tmp_path / "backbones").iterdir()) == ["byol_backbone_1min.pt",
                                                                         "byol_backbone_2.5min.pt"]
