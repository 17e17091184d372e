"""Each method's training step against the same method in another library: lightly's own examples
and solo-learn.

    git clone https://github.com/lightly-ai/lightly /tmp/lightly           # outside this repository
    git clone https://github.com/vturrisi/solo-learn /tmp/solo-learn
    pip install lightning einops omegaconf                                 # what solo-learn imports
    python -m benchmarks.peers --lightly /tmp/lightly/examples/pytorch_lightning --solo-learn /tmp/solo-learn
    python -m benchmarks.peers --lightly ... --size 224 --batch 128 --precision bf16-mixed   # a GPU

lightly's ``examples/pytorch_lightning/<method>.py`` are scripts that build a LightningModule and
train it on CIFAR-10; only their imports and class definitions are run here. solo-learn's methods
(``solo.methods``) are built from the configuration its own tests use, with the same widths as
medssl's side. Nothing of either is kept in this repository: both are read from the folders given.
Their modules are timed as they are: ResNet-18, their heads, their optimiser (solo-learn: SGD with
momentum 0.9 on both sides, no schedule). medssl's method is built to the same work: the same
ResNet-18, head widths, queue and optimiser (the differences that remain are listed per method),
and both take the same synthetic views already on the device, at the same precision, in
alternating rounds in one process. A step is what Lightning runs: the training step (or loss),
backward, the gradient hook, the optimiser step and the momentum update. Goal: medssl's step
<= 1.0x the peer's; where it is slower, the list of differences says where the time goes.
Written: benchmarks/results/peers-<peer>-<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks import common
from medssl.pretrain.methods import OptimizerConfig
from medssl.pretrain.methods import method as registered_method

GOAL = 1.0


@dataclass
class Pairing:
    """A peer's module and medssl's method built to the same work."""

    module: str  # lightly: file in examples/pytorch_lightning; solo-learn: class in solo.methods
    ours: dict  # medssl constructor arguments
    optimizer: OptimizerConfig
    local_views: int = 0  # multi-crop: low-resolution views after the two global ones
    differences: list[str] = field(default_factory=list)
    peer_kwargs: dict = field(default_factory=dict)  # solo-learn: its ``method_kwargs``


SGD = OptimizerConfig(name="sgd", lr=0.06, momentum=0.0, weight_decay=0.0, warmup_epochs=0)
ADAM = OptimizerConfig(name="adam", lr=0.001, weight_decay=0.0, warmup_epochs=0)
SGD_MOMENTUM = OptimizerConfig(name="sgd", lr=0.06, momentum=0.9, weight_decay=0.0, warmup_epochs=0)
ONLINE_CLASSIFIER = "solo-learn's step also trains its online linear classifier (10 classes)"
LIGHTLY = {
    "simclr": Pairing("simclr.py", dict(hidden_dim=2048, out_dim=2048), SGD),
    "mocov2": Pairing("moco.py", dict(hidden_dim=512, out_dim=128, queue_length=4096), SGD),
    "byol": Pairing("byol.py", dict(hidden_dim=1024, out_dim=256), SGD,
                    differences=["the example runs 4 backbone passes of one view each, medssl 2 of both views"]),
    "barlowtwins": Pairing("barlowtwins.py", dict(hidden_dim=2048, out_dim=2048), SGD),
    "vicreg": Pairing("vicreg.py", dict(hidden_dim=2048, out_dim=2048), SGD,
                      differences=["medssl's head has 3 layers (VICReg's paper), the example's 2"]),
    "swav": Pairing("swav.py", dict(hidden_dim=512, out_dim=128, n_prototypes=512, queue_length=0), ADAM,
                    local_views=6),
    "dino": Pairing("dino.py", dict(hidden_dim=512, bottleneck_dim=64, out_dim=2048), ADAM, local_views=6),
}
SOLO_LEARN = {
    "simclr": Pairing("SimCLR", dict(hidden_dim=2048, out_dim=128), SGD_MOMENTUM,
                      peer_kwargs=dict(proj_hidden_dim=2048, proj_output_dim=128, temperature=0.1),
                      differences=["medssl's head has batch norm (SimCLR's paper), solo-learn's none",
                                   ONLINE_CLASSIFIER]),
    "mocov2": Pairing("MoCoV2Plus", dict(hidden_dim=2048, out_dim=128, queue_length=4096), SGD_MOMENTUM,
                      peer_kwargs=dict(proj_hidden_dim=2048, proj_output_dim=128, temperature=0.2, queue_size=4096),
                      differences=["solo-learn's MoCo v2+ is symmetric: 2 query and 2 key passes per step, medssl's "
                                   "MoCo v2 (the study's) 1 of each", ONLINE_CLASSIFIER]),
    "byol": Pairing("BYOL", dict(hidden_dim=1024, out_dim=256), SGD_MOMENTUM,
                    peer_kwargs=dict(proj_hidden_dim=1024, proj_output_dim=256, pred_hidden_dim=1024),
                    differences=["solo-learn runs 4 backbone passes of one view each, medssl 2 of both views",
                                 ONLINE_CLASSIFIER]),
    "barlowtwins": Pairing("BarlowTwins", dict(hidden_dim=2048, out_dim=2048), SGD_MOMENTUM,
                           peer_kwargs=dict(proj_hidden_dim=2048, proj_output_dim=2048),
                           differences=[ONLINE_CLASSIFIER]),
    "vicreg": Pairing("VICReg", dict(hidden_dim=2048, out_dim=2048), SGD_MOMENTUM,
                      peer_kwargs=dict(proj_hidden_dim=2048, proj_output_dim=2048), differences=[ONLINE_CLASSIFIER]),
    "swav": Pairing("SwAV", dict(hidden_dim=512, out_dim=128, n_prototypes=512, queue_length=0), SGD_MOMENTUM,
                    local_views=6, differences=[ONLINE_CLASSIFIER],
                    peer_kwargs=dict(proj_hidden_dim=512, proj_output_dim=128, num_prototypes=512, queue_size=0,
                                     temperature=0.1)),
    "dino": Pairing("DINO", dict(hidden_dim=512, bottleneck_dim=64, out_dim=2048), SGD_MOMENTUM,
                    differences=["2 global views, no local ones: solo-learn's DINO would put local views through "
                                 "the backbone but leave them out of its loss", ONLINE_CLASSIFIER],
                    peer_kwargs=dict(proj_hidden_dim=512, proj_output_dim=64, num_prototypes=2048)),
}
SOLO_CLASSES = 10


def load_example(path: Path) -> type:
    """The LightningModule class of a lightly example script: its imports and definitions run,
    its module-level training (dataset download, Trainer) left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    kept = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef))]
    name = f"lightly_example_{path.stem}"
    namespace = {"__name__": name}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    found = [v for v in namespace.values()
             if isinstance(v, type) and issubclass(v, pl.LightningModule) and v.__module__ == name]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one LightningModule class, found {[c.__name__ for c in found]}")
    return found[0]


def views(pairing: Pairing, size: int, local: int, batch: int, device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sizes = [size, size] + [local] * pairing.local_views
    return [torch.randn(batch, 3, s, s, generator=g).to(device) for s in sizes]


def autocast(device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def first_optimizer(configured):
    while isinstance(configured, (list, tuple)):
        configured = configured[0]
    return configured


class Lightly:
    """A lightly example's module, stepped as Lightning steps it."""

    def __init__(self, source: Path, pairing: Pairing, batch: int, device, precision):
        self.module = load_example(source / pairing.module)().to(device).train()
        self.optimizer = first_optimizer(self.module.configure_optimizers())
        self.device, self.precision = device, precision

    def step(self, views):
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.module.training_step((views, None), 0)
        loss.backward()
        self.module.on_after_backward()
        self.optimizer.step()


def solo_config(pairing: Pairing, batch: int):
    """The configuration solo-learn's own method tests build, at this pairing's widths."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "name": "peers", "method": pairing.module.lower(), "backbone": {"name": "resnet18"},
        "data": {"dataset": "custom", "num_large_crops": 2, "num_small_crops": pairing.local_views,
                 "num_classes": SOLO_CLASSES},
        "optimizer": {"name": "sgd", "batch_size": batch, "lr": pairing.optimizer.lr, "classifier_lr": 0.1,
                      "weight_decay": pairing.optimizer.weight_decay,
                      "kwargs": {"momentum": pairing.optimizer.momentum}},
        "scheduler": {"name": "none"}, "max_epochs": 100, "devices": 1, "accelerator": "cpu", "num_nodes": 1,
        "momentum": {"base_tau": 0.99, "final_tau": 1.0},
        "performance": {"disable_channel_last": True},  # medssl's side runs without channels_last too
        "method_kwargs": dict(pairing.peer_kwargs)})
    OmegaConf.set_struct(cfg, False)
    return cfg


class SoloLearn:
    """A solo-learn method, stepped as Lightning steps it: training step, backward, the gradient
    hook, the optimiser step and (momentum methods) the teacher's update."""

    def __init__(self, source: Path, pairing: Pairing, batch: int, device, precision):
        if str(source) not in sys.path:
            sys.path.insert(0, str(source))
        cls = getattr(importlib.import_module("solo.methods"), pairing.module)
        # no Trainer here: solo-learn asks ``self.trainer`` for the world size (SwAV), and logs nothing without one
        unattached = type(f"Unattached{cls.__name__}", (cls,), {"trainer": property(lambda self: None)})
        cfg = cls.add_and_assert_specific_cfg(solo_config(pairing, batch))
        self.module = unattached(cfg).to(device).train()
        self.module.on_train_start()
        if hasattr(self.module, "on_train_epoch_start"):
            self.module.on_train_epoch_start()
        self.optimizer = first_optimizer(self.module.configure_optimizers())
        self.targets = torch.randint(0, SOLO_CLASSES, (batch,), generator=torch.Generator().manual_seed(0)).to(device)
        self.indexes = torch.arange(batch, device=device)
        self.device, self.precision, self.steps = device, precision, 0

    def step(self, views):
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.module.training_step([self.indexes, views, self.targets], self.steps)
        loss.backward()
        self.module.on_after_backward()
        self.optimizer.step()
        updater = getattr(self.module, "momentum_updater", None)
        if updater is not None:  # what solo-learn's on_train_batch_end does after an optimiser step
            for pair in self.module.momentum_pairs:
                updater.update(*pair)
            updater.update_tau(cur_step=self.steps, max_steps=1000)
        self.steps += 1


PEERS = {"lightly": (LIGHTLY, Lightly, "lightly's examples/pytorch_lightning folder"),
         "solo-learn": (SOLO_LEARN, SoloLearn, "a solo-learn checkout (the folder holding solo/)")}


class Ours:
    def __init__(self, name, pairing: Pairing, device, precision):
        cls = registered_method(name).cls
        self.module = cls(arch="resnet18", optimizer=pairing.optimizer, **pairing.ours).to(device).train()
        self.module.total_steps = lambda *a: 1000  # no Trainer here
        config = self.module.optimizer_config
        self.optimizer = config.build(self.module.parameter_groups(), config.lr, fused=device.type == "cuda")
        self.device, self.precision = device, precision

    def step(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        self.module.on_train_batch_start(batch, 0)
        with autocast(self.device, self.precision):
            loss, _ = self.module.training_loss(batch)
        loss.backward()
        self.module.on_before_optimizer_step(self.optimizer)
        self.optimizer.step()
        self.module.after_optimizer_step()


def timed(runner, batch, steps: int, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def measure(peer: str, source: Path, name: str, args, device) -> dict:
    pairings, runner, _ = PEERS[peer]
    pairing = pairings[name]
    torch.manual_seed(0)
    theirs = runner(source, pairing, args.batch, device, args.precision)
    ours = Ours(name, pairing, device, args.precision)
    batch = views(pairing, args.size, args.local_size, args.batch, device)
    for side in (theirs, ours):  # warm-up
        for _ in range(args.warmup):
            side.step(batch)
    rounds = {"theirs": [], "ours": []}
    for r in range(args.rounds):  # alternating, the first one changing sides every round
        order = (("theirs", theirs), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("theirs", theirs))
        for label, side in order:
            rounds[label].append(timed(side, batch, args.steps, device))
    medians = {k: statistics.median(v) for k, v in rounds.items()}
    return {"method": name, "peer": peer, "module": pairing.module, "ours_s": medians["ours"],
            "theirs_s": medians["theirs"], "ratio": medians["ours"] / medians["theirs"], "rounds": rounds,
            "differences": pairing.differences,
            "goal": "PASS" if medians["ours"] / medians["theirs"] <= GOAL else "MISS"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for peer, (_, _, what) in PEERS.items():
        ap.add_argument(f"--{peer}", type=Path, metavar="FOLDER", help=what)
    ap.add_argument("--methods", nargs="+", choices=list(LIGHTLY), default=list(LIGHTLY))
    ap.add_argument("--size", type=int, default=64, help="global views' side")
    ap.add_argument("--local-size", type=int, help="multi-crop local views' side (default: size * 96 / 224)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"], default="32-true")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args(argv)
    args.local_size = args.local_size or max(16, args.size * 96 // 224)
    sources = {peer: getattr(args, peer.replace("-", "_")) for peer in PEERS}
    sources = {peer: source for peer, source in sources.items() if source is not None}
    if not sources:
        ap.error("give --lightly or --solo-learn (or both): the peer to time against")
    if "lightly" in sources and not (sources["lightly"] / "simclr.py").is_file():
        ap.error(f"--lightly {sources['lightly']}: no simclr.py there; give lightly's examples/pytorch_lightning "
                 "folder")
    if "solo-learn" in sources and not (sources["solo-learn"] / "solo" / "methods").is_dir():
        ap.error(f"--solo-learn {sources['solo-learn']}: no solo/methods there; give a solo-learn checkout")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    machine = common.machine(device)
    command = common.command("peers", argv)
    for peer, source in sources.items():
        rows = []
        for name in args.methods:
            print(f"timing {name} against {peer} ...", flush=True)
            rows.append(measure(peer, source, name, args, device))
        report = {"machine": machine, "command": command, "torch": torch.__version__, "peer": peer,
                  "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        lines = [f"# medssl against {peer} on {machine}", "", f"- command: `{command}`",
                 f"- torch {torch.__version__}; ResNet-18, {args.size} px (local views {args.local_size} px), "
                 f"batch {args.batch}, {args.precision}; median of {args.rounds} alternating rounds of {args.steps} "
                 f"steps after {args.warmup} warm-up steps; goal: medssl's step <= {GOAL}x {peer}'s", "",
                 f"| method | {peer} module | {peer} ms / step | medssl ms / step | medssl / {peer} | goal | "
                 "what still differs |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['module']} | {r['theirs_s'] * 1000:.0f} | {r['ours_s'] * 1000:.0f} | "
                         f"{r['ratio']:.2f}x | {r['goal']} | {'; '.join(r['differences']) or '-'} |")
        common.write(args.out, f"peers-{peer}-{machine}", report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
