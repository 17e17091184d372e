"""What synchronising BatchNorm over the processes costs per training step: plain BatchNorm
(each process its own statistics) against ``SyncFreeBatchNorm`` (``trainer.sync_batchnorm:
true``), on two processes, in alternating rounds, with the host reads counted per step.

    python -m benchmarks.sync_batchnorm [--arch resnet18] [--size 64] [--batch 8] [--steps 10]
                                        [--rounds 3] [--backend gloo]

On a CPU the two processes talk over gloo; on a machine with two GPUs give ``--backend nccl``
and each process takes one GPU. torch's own SyncBatchNorm runs on GPUs only: there its forward
reads the gathered counts back once per layer, which this one never does. Written:
benchmarks/results/sync_batchnorm-<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks import common
from medssl.host_reads import HostReads
from medssl.models import build_backbone
from medssl.models.sync_batchnorm import convert

KINDS = ("plain", "sync-free")


def step(net, optimizer, x) -> None:
    optimizer.zero_grad(set_to_none=True)
    net(x).float().pow(2).mean().backward()
    for p in net.parameters():  # as DDP: the gradients summed over the processes
        dist.all_reduce(p.grad)
    optimizer.step()


def rank_main(rank: int, world: int, port: int, args, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(args.backend, rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}") if args.backend == "nccl" else torch.device("cpu")
    nets = {"plain": build_backbone(args.arch).to(device).train()}
    nets["sync-free"] = convert(build_backbone(args.arch)).to(device).train()
    optimizers = {k: torch.optim.SGD(n.parameters(), lr=0.01) for k, n in nets.items()}
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    times = {k: [] for k in KINDS}
    reads = {}
    for kind in KINDS:  # warm-up, and the host reads of one step
        step(nets[kind], optimizers[kind], x)
        with HostReads() as counter:
            step(nets[kind], optimizers[kind], x)
        reads[kind] = counter.count
    for _ in range(args.rounds):
        for kind in KINDS:
            dist.barrier()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(nets[kind], optimizers[kind], x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[kind].append((time.perf_counter() - start) / args.steps)
    if rank == 0:
        Path(out).write_text(json.dumps({"times": times, "reads": reads}))
    dist.destroy_process_group()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="images per process")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / ".sync_batchnorm.tmp.json"
    mp.spawn(rank_main, args=(2, port, args, str(raw)), nprocs=2)
    measured = json.loads(raw.read_text())
    raw.unlink()
    medians = {k: statistics.median(v) for k, v in measured["times"].items()}
    machine = common.machine("cuda" if args.backend == "nccl" else "cpu")
    report = {"machine": machine, "command": common.command("sync_batchnorm", argv),
              "torch": torch.__version__, "settings": vars(args) | {"out": str(args.out)},
              "seconds_per_step": medians, "rounds": measured["times"], "host_reads_per_step": measured["reads"],
              "ratio": medians["sync-free"] / medians["plain"]}
    lines = [f"# Synchronised BatchNorm on {machine}", "", f"- command: `{report['command']}`",
             f"- torch {torch.__version__}; 2 processes ({args.backend}); {args.arch}, {args.size} px, "
             f"batch {args.batch} per process; median of {args.rounds} alternating rounds of {args.steps} steps",
             "", "| BatchNorm | ms / step | host reads / step |", "|---|---|---|"]
    lines += [f"| {k} | {medians[k] * 1000:.1f} | {measured['reads'][k]} |" for k in KINDS]
    lines += ["", f"sync-free / plain: {report['ratio']:.2f}x"]
    common.write(args.out, f"sync_batchnorm-{machine}", report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
