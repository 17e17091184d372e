"""BatchNorm synchronised over processes without a host read (``medssl.models.sync_batchnorm``):
two gloo processes, each with half of a batch, give the outputs, gradients and running
statistics of one process with the whole batch, and read nothing back from the device."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from medssl.host_reads import HostReads
from medssl.models.sync_batchnorm import (
    SyncFreeBatchNorm,
    SyncFreeBatchNorm1d,
    SyncFreeBatchNorm2d,
    convert,
    revert,
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"conv": nn.Conv2d(3, 4, 3), "bn2": nn.BatchNorm2d(4), "fc": nn.Linear(4, 6),
                          "bn1": nn.BatchNorm1d(6)})


def run(net: nn.Module, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor]):
    maps = net["bn2"](net["conv"](x))
    vectors = net["bn1"](net["fc"](maps.mean((2, 3))))
    (maps * weights[0]).sum().add((vectors * weights[1]).sum()).backward()
    return maps.detach(), vectors.detach()


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 10, 10, generator=g) * 3 + 1
    return x, (torch.randn(8, 4, 8, 8, generator=g), torch.randn(8, 6, generator=g))


def rank_main(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    net = convert(model()).train()
    x, (w2, w1) = data()
    half = slice(rank * 4, rank * 4 + 4)
    with HostReads() as reads:
        maps, vectors = run(net, x[half], (w2[half], w1[half]))
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    for grad in grads.values():
        dist.all_reduce(grad)  # as DDP sums them
    torch.save({"maps": maps, "vectors": vectors, "grads": grads, "reads": reads.count,
                "state": net.state_dict()}, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_with_half_a_batch_each_equal_one_with_the_whole(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank_main, args=(port, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    net = model().train()
    x, weights = data()
    maps, vectors = run(net, x, weights)
    torch.testing.assert_close(torch.cat([r["maps"] for r in ranks]), maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["vectors"] for r in ranks]), vectors, rtol=1e-4, atol=1e-5)
    for name, p in net.named_parameters():
        for r in ranks:
            # fc.bias: zero but for rounding (the BatchNorm after it takes its mean out)
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=1e-4, atol=1e-4, msg=name)
    for key, value in net.state_dict().items():  # running statistics, same names
        for r in ranks:
            torch.testing.assert_close(r["state"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    assert [r["reads"] for r in ranks] == [0, 0]


def test_conversion_keeps_the_weights_and_goes_back():
    net = model()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    weight = net["bn2"].weight
    synced = convert(net)
    assert type(synced["bn2"]) is SyncFreeBatchNorm2d and type(synced["bn1"]) is SyncFreeBatchNorm1d
    assert synced["bn2"].weight is weight  # the same parameter: the optimiser's stays valid
    assert synced.state_dict().keys() == before.keys()
    x, _ = data()
    with torch.no_grad():
        one_process = synced["bn2"](net["conv"](x))  # not distributed: plain BatchNorm
    plain = revert(synced)
    assert type(plain["bn2"]) is nn.BatchNorm2d and type(plain["bn1"]) is nn.BatchNorm1d
    for key, value in plain.state_dict().items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(value, before[key]), key
    assert one_process.shape == (8, 4, 8, 8)


def test_the_config_switch_selects_it(tmp_path):
    from medssl.pretrain.cli import pretrain_cli
    from medssl.pretrain.methods import method

    args = ["--config", str(method("simclr").quick_config), "--data.store", str(tmp_path / "store"),
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
            "--trainer.sync_batchnorm", "true", "--trainer.strategy", "ddp", "--trainer.devices", "1"]
    cli = pretrain_cli("simclr", args=args, run=False)
    assert isinstance(cli.trainer.strategy._layer_sync, SyncFreeBatchNorm)  # not torch's SyncBatchNorm
