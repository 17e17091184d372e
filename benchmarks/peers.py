"""Each method's training step against the same method in lightly's own examples.

    git clone https://github.com/lightly-ai/lightly /tmp/lightly        # outside this repository
    python benchmarks/peers.py --examples /tmp/lightly/examples/pytorch_lightning
    python benchmarks/peers.py --examples ... --size 224 --batch 128 --precision bf16-mixed   # a GPU

lightly's ``examples/pytorch_lightning/<method>.py`` are scripts that build a LightningModule and
train it on CIFAR-10; only their imports and class definitions are run here (read from the
given folder, nothing of them is kept in this repository), and their modules are timed as they
are: ResNet-18, their heads, their optimiser. medssl's method is built to the same work: the
same ResNet-18, head widths, queue and optimiser (the differences that remain are listed per
method), and both take the same synthetic views already on the device, at the same precision,
in alternating rounds in one process. A step is what Lightning runs: the training step (or
loss), backward, the gradient hook and the optimiser step. Goal: medssl's step <= 1.0x the
peer's; where it is slower, the ratio of the parts says where the time goes.
Written: benchmarks/results/peers-<machine>.{json,md}.
"""
from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import reporting
import torch

from medssl.pretrain.methods import OptimizerConfig
from medssl.pretrain.methods import method as registered_method

HERE = Path(__file__).resolve().parent
GOAL = 1.0


@dataclass
class Pairing:
    """A lightly example and medssl's method built to the same work."""

    example: str  # file in examples/pytorch_lightning
    ours: dict  # medssl constructor arguments
    optimizer: OptimizerConfig
    local_views: int = 0  # multi-crop: low-resolution views after the two global ones
    differences: list[str] = field(default_factory=list)


SGD = OptimizerConfig(name="sgd", lr=0.06, momentum=0.0, weight_decay=0.0, warmup_epochs=0)
ADAM = OptimizerConfig(name="adam", lr=0.001, weight_decay=0.0, warmup_epochs=0)
PAIRINGS = {
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


class Theirs:
    def __init__(self, cls, device, precision):
        self.module = cls().to(device).train()
        self.optimizer = self.module.configure_optimizers()
        if isinstance(self.optimizer, (list, tuple)):
            self.optimizer = self.optimizer[0]
        self.device, self.precision = device, precision

    def step(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.module.training_step((batch, None), 0)
        loss.backward()
        self.module.on_after_backward()
        self.optimizer.step()


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


def measure(name: str, args, device) -> dict:
    pairing = PAIRINGS[name]
    torch.manual_seed(0)
    theirs = Theirs(load_example(args.examples / pairing.example), device, args.precision)
    ours = Ours(name, pairing, device, args.precision)
    batch = views(pairing, args.size, args.local_size, args.batch, device)
    for runner in (theirs, ours):  # warm-up
        for _ in range(args.warmup):
            runner.step(batch)
    rounds = {"theirs": [], "ours": []}
    for r in range(args.rounds):  # alternating, the first one changing sides every round
        order = (("theirs", theirs), ("ours", ours)) if r % 2 == 0 else (("ours", ours), ("theirs", theirs))
        for label, runner in order:
            rounds[label].append(timed(runner, batch, args.steps, device))
    medians = {k: statistics.median(v) for k, v in rounds.items()}
    return {"method": name, "example": pairing.example, "ours_s": medians["ours"], "theirs_s": medians["theirs"],
            "ratio": medians["ours"] / medians["theirs"], "rounds": rounds, "differences": pairing.differences,
            "goal": "PASS" if medians["ours"] / medians["theirs"] <= GOAL else "MISS"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=Path, required=True, help="lightly's examples/pytorch_lightning folder")
    ap.add_argument("--methods", nargs="+", choices=list(PAIRINGS), default=list(PAIRINGS))
    ap.add_argument("--size", type=int, default=64, help="global views' side")
    ap.add_argument("--local-size", type=int, help="multi-crop local views' side (default: size * 96 / 224)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed", "16-mixed"], default="32-true")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    args.local_size = args.local_size or max(16, args.size * 96 // 224)
    if not (args.examples / "simclr.py").is_file():
        ap.error(f"--examples {args.examples}: no simclr.py there; give lightly's examples/pytorch_lightning folder")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for name in args.methods:
        print(f"timing {name} ...", flush=True)
        rows.append(measure(name, args, device))
    machine = reporting.machine(device)
    command = " ".join(["python", "benchmarks/peers.py", *(argv if argv is not None else sys.argv[1:])])
    report = {"machine": machine, "command": command, "torch": torch.__version__,
              "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    lines = [f"# medssl against lightly's examples on {machine}", "", f"- command: `{command}`",
             f"- torch {torch.__version__}; ResNet-18, {args.size} px (local views {args.local_size} px), "
             f"batch {args.batch}, {args.precision}; median of {args.rounds} alternating rounds of {args.steps} "
             f"steps after {args.warmup} warm-up steps; goal: medssl's step <= {GOAL}x lightly's", "",
             "| method | lightly example | lightly ms / step | medssl ms / step | medssl / lightly | goal | "
             "what still differs |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['example']} | {r['theirs_s'] * 1000:.0f} | {r['ours_s'] * 1000:.0f} | "
                     f"{r['ratio']:.2f}x | {r['goal']} | {'; '.join(r['differences']) or '-'} |")
    reporting.write(args.out, "peers", report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
