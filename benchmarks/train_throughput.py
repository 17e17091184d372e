"""Pre-training throughput per method vs a plain supervised step of the same backbone and batch.

    python benchmarks/train_throughput.py --arch resnet50 --size 64 --batch 32            # CPU
    python benchmarks/train_throughput.py --arch resnet50 --size 224 --batch 128 \\
        --precision bf16-mixed --channels-last                                            # GPU

Synthetic views already in memory (this measures the training step, not the input pipeline),
the study's view counts (SwAV 2 x size + 6 x size*96/224, MoCo v2 and BYOL 2 x size) and heads.
Each method runs in its own process (clean peak memory). Images/s counts source images (each
with all its views) per second: batch / median step time over --steps timed steps after --warmup.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

METHODS = ("supervised", "swav", "mocov2", "byol", "spark", "spark_dense")


def build(method: str, arch: str):
    import pytorch_lightning as pl

    from medssl.methods import BYOL, MoCoV2, SparK, SwAV
    from medssl.models import build_backbone, feature_dim

    if method == "swav":
        return SwAV(arch=arch)
    if method == "mocov2":
        return MoCoV2(arch=arch)
    if method == "byol":
        return BYOL(arch=arch)
    if method == "spark":
        return SparK(arch=arch, warmup_epochs=0)
    if method == "spark_dense":
        class DenseSparK(SparK):
            """The same encoder + decoder run densely: no masking, plain BatchNorm, no tokens;
            the loss over every patch. What SparK's masking costs on top of it is its overhead."""

            def forward(self, images, mask):
                r = self.backbone
                x = r.maxpool(r.relu(r.bn1(r.conv1(images))))
                features = []
                for layer in (r.layer1, r.layer2, r.layer3, r.layer4):
                    x = layer(x)
                    features.append(x)
                d = self.densify
                return self.decoder([p(n(f)) for f, n, p in zip(features[::-1], d.norms, d.projections)])

            def make_mask(self, images, generator=None):
                g = images.shape[-1] // 32
                return torch.zeros(len(images), 1, g, g, dtype=torch.bool, device=images.device)

        return DenseSparK(arch=arch, warmup_epochs=0)

    class Supervised(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = build_backbone(arch)
            self.fc = torch.nn.Linear(feature_dim(arch), 10)
            self.hparams.channels_last = False

        def training_step(self, batch, batch_idx):
            x = batch[0]
            return torch.nn.functional.cross_entropy(self.fc(self.backbone(x)), torch.zeros(len(x), dtype=torch.long, device=x.device))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    return Supervised()


def view_shapes(method: str, size: int):
    if method == "swav":
        return [size] * 2 + [max(16, size * 96 // 224)] * 6
    if method in ("supervised", "spark", "spark_dense"):
        return [size]
    return [size, size]


class Views(torch.utils.data.Dataset):
    def __init__(self, sizes, n):
        self.views = [torch.randn(n, 3, s, s) for s in sizes]

    def __len__(self):
        return len(self.views[0])

    def __getitem__(self, i):
        return [v[i] for v in self.views]


def run_one(args) -> dict:
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        def __init__(self):
            self.times = []

        def _sync(self):
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_batch_start(self, *a):
            self._sync()
            self.start = time.perf_counter()

        def on_train_batch_end(self, *a):
            self._sync()
            self.times.append(time.perf_counter() - self.start)

    module = build(args.single, args.arch)
    if args.single != "supervised":
        module.hparams.channels_last = args.channels_last
        module.hparams.compile = args.compile
    steps = args.warmup + args.steps
    data = torch.utils.data.DataLoader(Views(view_shapes(args.single, args.size), args.batch * 2),
                                       batch_size=args.batch, shuffle=False, drop_last=True,
                                       pin_memory=torch.cuda.is_available())
    clock = Clock()
    trainer = pl.Trainer(max_steps=steps, accelerator="auto", devices=1, precision=args.precision,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, data)
    step = statistics.median(clock.times[args.warmup:])
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"method": args.single, "images_per_s": args.batch / step, "step_s": step,
            "peak_memory_mib": peak, "memory_kind": "cuda allocated" if torch.cuda.is_available() else "process RSS"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    if args.single:
        print("RESULT " + json.dumps(run_one(args)))
        return
    rows = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--single", method] + [
            a for a in sys.argv[1:] if a not in args.methods and a != "--methods"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
        print(f"{method:10s} {rows[-1]['images_per_s']:8.1f} img/s  peak {rows[-1]['peak_memory_mib']:.0f} MiB",
              flush=True)
    base = next((r for r in rows if r["method"] == "supervised"), None)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{platform.machine()}-{os.cpu_count()}cpu"
    title = (f"# Pre-training throughput on {device}: {args.arch}, {args.size} px, batch {args.batch}, "
             f"{args.precision}{', channels_last' if args.channels_last else ''}"
             f"{', compiled' if args.compile else ''}")
    lines = [title, "", "| method | images/s | step time vs supervised | peak memory (MiB) |",
             "|---|---:|---:|---:|"]
    for r in rows:
        ratio = r["step_s"] / base["step_s"] if base else float("nan")
        lines.append(f"| {r['method']} | {r['images_per_s']:.1f} | {ratio:.2f}x | {r['peak_memory_mib']:.0f} ({r['memory_kind']}) |")
    by = {r["method"]: r for r in rows}
    if "spark" in by and "spark_dense" in by:
        lines.append(f"\nSparK step vs the same encoder + decoder run densely: "
                     f"{by['spark']['step_s'] / by['spark_dense']['step_s']:.2f}x (goal <= 1.15x)")
    text = "\n".join(lines) + "\n"
    tag = f"train-{device.replace(' ', '_')}-{args.arch}-{args.size}px-{args.precision}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tag}.md").write_text(text)
    (args.out / f"{tag}.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "out"},
                                                      "device": device, "results": rows}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
