"""``medssl doctor``: does this machine train every method correctly, and how fast?

A few steps of each registered method with its full config's model (heads, queues, optimiser;
the backbone and view size as chosen), on synthetic views already on the device, each checked:

- precision: the loss under the run's precision (bf16-mixed / 16-mixed autocast) against the
  same step in float32, from the same weights and batch: within ``LOSS_TOLERANCE``;
- host reads per step: operations that make the host wait for the device (``.item()``, a
  boolean-mask index, ``nonzero``...), counted with ``medssl.host_reads.HostReads``, and on a
  GPU also by CUDA's sync debug mode; ``--compile``: graph breaks of the compiled loss;
- speed: images/s, peak device memory, and the step time over the same backbone and head
  passes run bare (``medssl.pretrain.overhead``; goal at most ``OVERHEAD_GOAL``);
- DDP (``--ddp N`` processes, default: the GPUs when there are two or more): one step on N
  processes, each with its share of the batch, against one process with the whole batch: the
  loss and the gradients agree;
- the cluster environment (SLURM, torchrun, plain) and whether requeue is armed.

The table goes to the screen and to ``--out`` (attach it to a bug report).
"""
from __future__ import annotations

import os
import platform
import socket
import statistics
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

from .host_reads import HostReads, host_tensors
from .precision import default_precision
from .pretrain import cluster
from .pretrain.methods import method as registered_method
from .pretrain.methods import method_names
from .pretrain.overhead import BASELINES, OVERHEAD_GOAL, build, view_shapes

LOSS_TOLERANCE = 0.05  # relative, between the mixed-precision and the float32 loss
NEAR_ZERO = 0.002  # absolute, for a loss near its floor (BYOL's at initialisation)
# relative: the loss, and the whole gradient (L2). Rounding alone, measured on CPU (gloo):
# up to 2e-5, 2e-3 through SwAV's Sinkhorn (exp of scores / 0.05); a method whose loss is not
# the one-process loss (per-process statistics) is off by 0.4 and more
DDP_TOLERANCE = 1e-2


def model_config(name: str) -> dict:
    """The ``model`` section of the method's full config (the study's settings)."""
    return dict(yaml.safe_load(registered_method(name).config.read_text()).get("model") or {})


def build_method(name: str, arch: str | None, device: torch.device | None = None, deterministic: bool = False):
    """The method with its full config's model, ``arch`` if given, no learning-rate warm-up; on
    ``device`` in the memory format a run there uses (channels-last where the config asks).
    ``deterministic``: no per-image random draws inside the network (SparK's drop-path)."""
    settings = model_config(name)
    if deterministic and "drop_path" in settings:
        settings["drop_path"] = 0.0
    if arch:
        settings["arch"] = arch
    cls = registered_method(name).cls
    optimizer = cls.OPTIMIZER.replace(**{**(settings.pop("optimizer", None) or {}), "warmup_epochs": 0})
    module = cls(optimizer=optimizer, **settings)
    module.total_steps = lambda *a: 1000  # no Trainer here
    if device is not None:
        module = module.to(device)
        if module.uses_channels_last:
            module = module.to(memory_format=torch.channels_last)
    return module.train()


def views_for(name: str, size: int, batch: int, device: torch.device, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, s, s, generator=generator).to(device) for s in view_shapes(name, size)]


def optimizer_of(module, device: torch.device) -> torch.optim.Optimizer:
    config = module.optimizer_config
    return config.build(module.parameter_groups(), config.lr, fused=device.type == "cuda")


def autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def train_step(module, optimizer, batch, precision: str, device: torch.device) -> torch.Tensor:
    """One optimiser step as Lightning takes it (the scaler of 16-mixed aside)."""
    optimizer.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the step's draws (SparK's mask); the hooks that need a Trainer are left out
    with autocast(device, precision):
        loss, _ = module.training_loss(batch)
    loss.backward()
    optimizer.step()
    module.after_optimizer_step()
    return loss.detach()


def seconds_per_step(module, batch, precision: str, device: torch.device, steps: int) -> float:
    optimizer = optimizer_of(module, device)
    train_step(module, optimizer, batch, precision, device)  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_step(module, optimizer, batch, precision, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def loss_agreement(name: str, arch: str | None, batch, precision: str, device: torch.device) -> dict:
    """The first step's loss in float32 and under ``precision``, from the same weights."""
    losses = {}
    for kind in ("32-true", precision):
        torch.manual_seed(0)
        module = build_method(name, arch, device)
        torch.manual_seed(0)  # the step's draws (SparK's mask); the hooks that need a Trainer are left out
        with torch.no_grad(), autocast(device, kind):
            losses[kind] = float(module.training_loss(batch)[0])
    exact, mixed = losses["32-true"], losses[precision]
    agrees = abs(mixed - exact) <= max(NEAR_ZERO, LOSS_TOLERANCE * abs(exact))
    return {"fp32_loss": exact, "loss": mixed, "loss_agrees": agrees}


def host_reads(module, batch, precision: str, device: torch.device) -> dict:
    optimizer = optimizer_of(module, device)
    train_step(module, optimizer, batch, precision, device)  # lazy state (queues, optimiser moments)
    syncs = None
    with HostReads(ignore=host_tensors(optimizer)) as reads:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    train_step(module, optimizer, batch, precision, device)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            syncs = sum("synchroniz" in str(w.message) for w in caught)
        else:
            train_step(module, optimizer, batch, precision, device)
    return {"host_reads": reads.count, "host_read_ops": dict(reads.ops), "cuda_syncs": syncs}


def graph_breaks(module, batch) -> int:
    import torch._dynamo

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(type(module).training_loss)(module, batch)
    return int(explanation.graph_break_count)


def check_method(name: str, args, device: torch.device) -> dict:
    batch = views_for(name, args.size, args.batch, device)
    row = {"method": name, **loss_agreement(name, args.arch, batch, args.precision, device)}
    torch.manual_seed(0)
    module = build_method(name, args.arch, device)
    row.update(host_reads(module, batch, args.precision, device))
    row["graph_breaks"] = graph_breaks(module, batch) if args.compile else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = seconds_per_step(module, batch, args.precision, device, args.steps)
    row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    bare = build(BASELINES[name], args.arch or model_config(name).get("arch", "resnet50")).to(device).train()
    bare.total_steps = lambda *a: 1000
    bare_step = seconds_per_step(bare, views_for(name, args.size, args.batch, device), args.precision, device,
                                 args.steps)
    row.update(images_per_s=args.batch / step, overhead=step / bare_step)
    return row


# --- DDP: N processes against one ----------------------------------------------------------
def ddp_rank(rank: int, world: int, port: int, names: list[str], args, folder: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from .models.sync_batchnorm import convert

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    results = {}
    for name in names:
        torch.manual_seed(0)
        module = convert(build_method(name, args.arch, device, deterministic=True))
        batch = views_for(name, args.size, args.batch * world, device)
        share = [v[rank * args.batch:(rank + 1) * args.batch] for v in batch]
        same_masks(module, batch, slice(rank * args.batch, (rank + 1) * args.batch))
        ddp = DistributedDataParallel(LossOf(module), device_ids=[rank] if cuda else None,
                                      find_unused_parameters=True)
        torch.manual_seed(0)
        loss = ddp(share)
        loss.backward()  # DDP averages the gradients over the processes
        total = loss.detach().clone()
        dist.all_reduce(total)
        results[name] = {"loss": float(total) / world, "grads": gradients(module)}
    if rank == 0:
        torch.save(results, Path(folder) / "ddp.pt")
    dist.destroy_process_group()


def same_masks(module, batch, rows: slice) -> None:
    """SparK: the masks the one-process step draws for the whole batch, each process its rows."""
    if hasattr(module, "make_mask"):
        torch.manual_seed(0)
        masks = module.make_mask(batch[0])
        module.make_mask = lambda images, generator=None: masks[rows]


class LossOf(torch.nn.Module):
    """The method's training loss as ``forward``: DDP's forward prepares the gradient all-reduce."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, batch):
        return self.module.training_loss(batch)[0]


def gradients(module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().cpu().clone() for name, p in module.named_parameters() if p.grad is not None}


def ddp_agreement(names: list[str], args, world: int, folder: Path) -> dict[str, dict]:
    """One step on ``world`` processes (each ``args.batch`` images) against one process with
    all ``world * args.batch`` images, from the same weights: the mean loss, and the gradients
    (DDP's average) before the optimiser acts on them (LARS and Adam magnify rounding)."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_rank, args=(world, port, names, args, str(folder)), nprocs=world)
    spread = torch.load(folder / "ddp.pt", weights_only=True)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    out = {}
    for name in names:
        torch.manual_seed(0)
        module = build_method(name, args.arch, device, deterministic=True)
        batch = views_for(name, args.size, args.batch * world, device)
        same_masks(module, batch, slice(None))
        torch.manual_seed(0)
        loss, _ = module.training_loss(batch)
        loss.backward()
        ours, theirs = gradients(module), spread[name]["grads"]
        keys = sorted(set(ours) & set(theirs))
        # over the whole gradient: a bias before a BatchNorm has a gradient of zero but for rounding
        difference = torch.cat([(ours[k] - theirs[k]).flatten() for k in keys]).norm()
        worst = float(difference / torch.cat([ours[k].flatten() for k in keys]).norm().clamp_min(1e-12))
        loss_gap = abs(spread[name]["loss"] - float(loss)) / max(abs(float(loss)), 1e-12)
        out[name] = {"ddp_loss_gap": loss_gap, "ddp_grad_gap": worst,
                     "ddp_agrees": loss_gap <= DDP_TOLERANCE and worst <= DDP_TOLERANCE}
    return out


def verdict(row: dict) -> str:
    problems = []
    if not row["loss_agrees"]:
        problems.append(f"loss in {row['precision']} differs from float32 beyond {LOSS_TOLERANCE:.0%}")
    if row["host_reads"]:
        problems.append(f"{row['host_reads']} host reads per step ({', '.join(row['host_read_ops'])})")
    if row.get("cuda_syncs"):
        problems.append(f"{row['cuda_syncs']} CUDA synchronisations per step")
    if row.get("graph_breaks"):
        problems.append(f"{row['graph_breaks']} graph breaks under torch.compile")
    if row["overhead"] > OVERHEAD_GOAL:
        problems.append(f"step {row['overhead']:.2f}x its bare passes (goal <= {OVERHEAD_GOAL}x)")
    if row.get("ddp_agrees") is False:
        problems.append("DDP disagrees with one process")
    return "OK" if not problems else "CHECK: " + "; ".join(problems)


def table(rows: list[dict], args, environment: str) -> str:
    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    arch = args.arch or "each config's (resnet50)"
    lines = [
        "# medssl doctor", "",
        f"- device: {device}; torch {torch.__version__}; precision {args.precision}",
        f"- launch: {environment}",
        f"- model: {arch}; views of the full configs at {args.size} px; batch {args.batch}; "
        f"median of {args.steps} steps; compile checked: {'yes' if args.compile else 'no'}; "
        + (f"DDP: {args.ddp} processes" if args.ddp else "DDP: not checked (one device)"),
        "", "| method | loss fp32 | loss " + args.precision + " | host reads / step | graph breaks | images/s | "
        "peak GiB | step / bare | DDP | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ddp = "-" if r.get("ddp_agrees") is None else (
            "agrees" if r["ddp_agrees"] else
            f"differs (loss {r['ddp_loss_gap']:.1e}, gradients {r['ddp_grad_gap']:.1e})")
        reads = str(r["host_reads"]) + ("" if r["cuda_syncs"] is None else f" (CUDA: {r['cuda_syncs']})")
        breaks = "-" if r["graph_breaks"] is None else str(r["graph_breaks"])
        memory = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        lines.append(f"| {r['method']} | {r['fp32_loss']:.4g} | {r['loss']:.4g} | {reads} | {breaks} | "
                     f"{r['images_per_s']:.1f} | {memory} | {r['overhead']:.2f}x | {ddp} | {r['verdict']} |")
    return "\n".join(lines) + "\n"


def run(args) -> tuple[list[dict], str]:
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    rows = []
    for name in args.methods:
        print(f"checking {name} ...", flush=True)
        row = check_method(name, args, device)
        row["precision"] = args.precision
        rows.append(row)
    if args.ddp and args.ddp > 1:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            agreement = ddp_agreement(args.methods, args, args.ddp, Path(folder))
        for row in rows:
            row.update(agreement[row["method"]])
    for row in rows:
        row["verdict"] = verdict(row)
    return rows, table(rows, args, cluster.describe())


def defaults(args) -> None:
    """What is left unset: the device's precision, GPUs for DDP, sizes by device."""
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.precision = args.precision or default_precision()
    if args.ddp is None:
        args.ddp = torch.cuda.device_count() if torch.cuda.device_count() > 1 else 0
    args.methods = args.methods or method_names()
