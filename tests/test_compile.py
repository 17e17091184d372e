"""torch.compile sees each method's whole training loss as one graph, and keeps it.

``PretrainMethod.training_loss`` (backbones, heads, momentum encoders, queues, SparK's mask,
sparse encoder, densify + decoder, the loss) is what ``--model.compile true`` compiles. A graph
break splits it and hands the pieces between back to Python; a recompilation at every step
(a guard on something that changes, as a Python-int queue position or the step counter) soon
exceeds torch's recompile limit, after which the loss runs eagerly. Both only cost time, so
nothing else would catch them. TorchDynamo alone checks this: no Inductor, no GPU needed.
"""
import functools

import pytest
import pytorch_lightning as pl
import torch
import torch._dynamo
from lightly.models.modules.memory_bank import MemoryBankModule
from torch._dynamo.backends.debugging import ExplainWithBackend
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters, guard_failures

from medssl.pretrain.methods import SparK, method_names
from medssl.pretrain.methods.queue import Queue

from registered import build, quick_views, view_sizes, without_warmup

# the queues wrap within the test's 4 steps of 4 images (SwAV's joins the loss in the second epoch)
QUEUES = {"swav": dict(queue_length=8), "mocov2": dict(queue_length=8)}
SIZES = {"swav": [32, 32, 16, 16], "mocov2": [32, 32], "byol": [32, 32], "spark": [64],
         "dino": [32, 32, 16, 16], "simclr": [32, 32], "barlowtwins": [32, 32], "vicreg": [32, 32]}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def views(sizes, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, s, s, generator=generator) for s in sizes]


def describe(graph_break) -> str:
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                        for f in reversed(graph_break.user_stack[-4:]))
    return f"{graph_break.reason.strip()}\n    at {where}"


class Views(torch.utils.data.Dataset):
    def __init__(self, sizes, n):
        self.views = views(sizes, batch=n)

    def __len__(self):
        return len(self.views[0])

    def __getitem__(self, i):
        return [v[i] for v in self.views]


@pytest.mark.parametrize("method", method_names())
@pytest.mark.slow
def test_compiled_training_traces_the_loss_once_without_graph_breaks(method, monkeypatch):
    """``--model.compile true`` in a real Trainer, 2 epochs x 2 steps: the queues wrap, the step
    and epoch counters move. TorchDynamo's graphs run as they are (no Inductor)."""
    sizes = SIZES.get(method) or view_sizes(quick_views(method))
    module = build(method, **QUEUES.get(method, {}), optimizer=without_warmup(method))
    module.hparams.compile = True
    explained = ExplainWithBackend("eager")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=explained))
    torch._dynamo.reset()
    counters.clear()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(Views(sizes, 8), batch_size=4))
    assert trainer.global_step == 4
    out = explained.output()
    breaks = "\n".join(describe(b) for b in out.break_reasons)
    assert not out.break_reasons, f"{method}: {len(out.break_reasons)} graph breaks\n{breaks}"
    assert not counters["graph_break"], dict(counters["graph_break"])
    # one graph for the whole run; SwAV: a second one when its queue joins the loss (epoch 1)
    recompiles = "\n".join(str(r) for reasons in guard_failures.values() for r in reasons)
    assert out.graph_count == (2 if method == "swav" else 1), f"{method}: recompiled\n{recompiles}"
    if method == "swav":
        assert module.queue_in_loss


def test_queue_updates_compile_to_lightlys_queue():
    """The queue written on the device, compiled through AOTAutograd (what Inductor is given):
    lightly's contents and position while it wraps, and one graph for all positions."""
    lightly_queue, queue = MemoryBankModule((10, 4)), Queue((10, 4))
    queue.bank.copy_(lightly_queue.bank)
    graphs = CompileCounterWithBackend("aot_eager")
    update = torch.compile(lambda q, x: q(x, update=True), backend=graphs)
    torch._dynamo.reset()
    for step in range(6):
        x = torch.randn(4, 4)
        _, expected = lightly_queue(x, update=True)
        _, got = update(queue, x)
        torch.testing.assert_close(got, expected)  # the bank before the update
        assert queue.position == int(lightly_queue.bank_ptr)  # 4, 8, 0 (the end is dropped), ...
        torch.testing.assert_close(queue.bank, lightly_queue.bank)
    assert graphs.frame_count == 1


# --- under DDP: the collectives (SwAV's Sinkhorn and queues, SparK's synchronised BatchNorm) ---
def spark_for_gradients():
    """SparK in float64 without drop-path, its decoder's (unsynchronised) BatchNorms frozen:
    two processes then compute exactly what one process computes on both halves."""
    torch.manual_seed(0)
    module = SparK(arch="resnet18", decoder_width=32, drop_path=0.0, sync_bn=True).double()
    module.decoder.eval()
    return module


def spark_half(rank: int):
    from medssl.models.sparse import random_mask

    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(rank), dtype=torch.float64)
    return images, random_mask(4, 2, 0.6, generator=torch.Generator().manual_seed(10 + rank))


def ddp_worker(rank: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    images, mask = spark_half(rank)
    result = {}
    for compiled in (False, True):
        module = spark_for_gradients()
        explained = ExplainWithBackend("eager")
        torch._dynamo.reset()
        counters.clear()
        forward = torch.compile(type(module).forward, backend=explained) if compiled else type(module).forward
        module.loss(images, forward(module, images, mask), mask).backward()
        grad = module.backbone.conv1.weight.grad
        dist.all_reduce(grad)  # what DDP does with it (then / 2)
        result["compiled" if compiled else "eager"] = grad / 2
    result["breaks"] = [describe(b) for b in explained.output().break_reasons] + list(counters["graph_break"])
    if rank == 0:
        torch.save(result, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_under_ddp_synced_batchnorm_traces_and_takes_exact_gradients(tmp_path):
    """Two CPU processes (gloo): SparK's encoder and densify with their synchronised visible-only
    BatchNorm trace without a break, and take, eager and compiled, the gradient one process
    takes on both halves (an in-place all-reduce would leave out the other process's share)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(port, str(tmp_path / "rank0.pt")), nprocs=2)
    result = torch.load(tmp_path / "rank0.pt", weights_only=True)
    assert result["breaks"] == [], "\n".join(result["breaks"])
    module = spark_for_gradients()
    module.encoder.sync_bn = module.densify.sync_bn = False  # one process sees both halves
    (images0, mask0), (images1, mask1) = spark_half(0), spark_half(1)
    images, mask = torch.cat([images0, images1]), torch.cat([mask0, mask1])
    prediction = module(images, mask)
    loss = module.loss(images[:4], prediction[:4], mask0) + module.loss(images[4:], prediction[4:], mask1)
    (loss / 2).backward()
    expected = module.backbone.conv1.weight.grad
    tolerance = dict(rtol=1e-9, atol=1e-9 * expected.abs().max().item())
    torch.testing.assert_close(result["eager"], expected, **tolerance)
    torch.testing.assert_close(result["compiled"], expected, **tolerance)
