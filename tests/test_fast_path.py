"""The training step and the device views never wait for the device, and device views train."""
import os

import pytest
import pytorch_lightning as pl
import torch

from medssl.data.intensity import HUToIntensity
from medssl.pretrain.batch_views import BatchMultiView
from medssl.pretrain.datamodule import SliceStoreDataModule
from medssl.pretrain.methods import MoCoV2, method_names
from medssl.pretrain.methods.queue import Queue

from conftest import phantom_store
from registered import build, quick_views, view_sizes

# On the meta device tensors have shapes but no values: reading one back (.item(), bool(),
# int(), indexing by a mask, as a GPU step would when it waits on the device) raises.
QUEUES = {"swav": dict(queue_start_epoch=0)}  # the queue in the loss from the first step: no epochs here
SIZES = {"swav": [32, 32, 16, 16], "mocov2": [32, 32], "byol": [32, 32], "spark": [64]}


@pytest.mark.parametrize("method", method_names())
@pytest.mark.slow
def test_training_step_reads_nothing_back_from_the_device(method, monkeypatch):
    sizes = SIZES.get(method) or view_sizes(quick_views(method))
    module = build(method, **QUEUES.get(method, {})).to("meta")
    monkeypatch.setattr(module, "total_steps", lambda: 100)  # no Trainer here
    batch = [torch.empty(4, 3, s, s, device="meta") for s in sizes]
    for _ in range(2):  # the queues fill on the first step
        loss = module.training_step(batch, 0)
        loss.backward()
        module.after_optimizer_step()
    assert loss.device.type == "meta" and loss.numel() == 1


def test_device_views_read_nothing_back_from_the_device():
    hu = torch.empty(4, 1, 64, 64, dtype=torch.int16, device="meta")
    spec = {"size": 32, "count": 2, "rotate_p": 0.5, "vflip_p": 0.5, "jitter_p": 0.8,
            "blur_p": 0.5, "noise_p": 0.5}
    views = BatchMultiView([spec])(HUToIntensity(mode="random_window").batch(hu))
    assert [tuple(v.shape) for v in views] == [(4, 3, 32, 32)] * 2


def test_queue_position_survives_a_checkpoint():
    queue = Queue((10, 4))
    for _ in range(3):
        queue(torch.randn(4, 4), update=True)
    assert queue.position == 0 and int(queue.bank_ptr) == 0  # 4 + 4 + 4 >= 10 wraps
    queue(torch.randn(4, 4), update=True)
    copy = Queue((10, 4))
    copy.restore(queue.bank, queue.bank_ptr)
    assert copy.position == 4 and torch.equal(copy.bank, queue.bank)


class FirstBatch(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batch = batch


@pytest.mark.parametrize("augment_on", ["device", "auto"])
def test_views_made_on_the_device_train_a_method(tmp_path_factory, augment_on):
    store = phantom_store(tmp_path_factory, patients=2, size=48)
    views = [{"size": 32, "count": 2, "rotate_p": 0.5, "jitter_p": 0.8, "blur_p": 0.5}]
    data = SliceStoreDataModule(str(store), views=views, batch_size=4, num_workers=0,
                                intensity={"mode": "random_window"}, augment_on=augment_on)
    seen = FirstBatch()
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[seen])
    trainer.fit(MoCoV2(arch="resnet18", queue_length=16), data)
    assert trainer.global_step == 2
    assert (data.device_views is not None) == (augment_on == "device")  # auto: workers on CPU
    assert [tuple(v.shape) for v in seen.batch] == [(4, 3, 32, 32)] * 2
    assert all(v.dtype == torch.float32 for v in seen.batch)
    with pytest.raises(ValueError, match="augment_on"):
        SliceStoreDataModule(str(store), augment_on="gpu")


def test_channels_last_is_a_gpu_default():
    assert not MoCoV2(arch="resnet18", queue_length=16).uses_channels_last  # on CPU
    assert MoCoV2(arch="resnet18", queue_length=16, channels_last=True).uses_channels_last


class FormatAtWrap(pl.Callback):
    """The parameters' memory format when the strategy has wrapped the model (DDP builds its
    gradient buckets from their strides then), before any module hook of the fit."""

    def on_fit_start(self, trainer, module):
        self.channels_last = [p.is_contiguous(memory_format=torch.channels_last)
                              for p in trainer.strategy.model.parameters() if p.dim() == 4]


def test_channels_last_is_set_before_ddp_wraps_the_model(tmp_path_factory, monkeypatch):
    import socket

    with socket.socket() as s:  # this process's own port, given back after (later tests launch DDP)
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(s.getsockname()[1]))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    store = phantom_store(tmp_path_factory, patients=1, size=32)
    data = SliceStoreDataModule(str(store), views=[{"size": 32, "count": 2}], batch_size=4, num_workers=0)
    seen = FormatAtWrap()
    trainer = pl.Trainer(accelerator="cpu", strategy="ddp", devices=1, max_steps=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[seen])
    environment = dict(os.environ)
    try:
        trainer.fit(MoCoV2(arch="resnet18", queue_length=16, channels_last=True), data)
    finally:  # what Lightning set for this process's DDP would mislead later DDP launches
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environment)
    assert seen.channels_last and all(seen.channels_last)


def test_seeded_device_views_leave_the_cuda_generators_alone(monkeypatch):
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(seed))
    images = torch.rand(2, 1, 24, 24)
    state = torch.get_rng_state()
    views = BatchMultiView([{"size": 16, "count": 2, "rotate_p": 0.5}])(images, seed=7)
    assert len(views) == 2 and seeded == []  # torch.manual_seed would seed every GPU's stream
    assert torch.equal(torch.get_rng_state(), state)  # and the CPU stream is restored
