"""Pre-training throughput per method vs a plain supervised step of the same backbone and batch.

    python -m benchmarks.train_throughput --arch resnet50 --size 64 --batch 32            # CPU
    python -m benchmarks.train_throughput --arch resnet50 --size 224 --batch 128 \\
        --precision bf16-mixed --channels-last                                            # GPU

Synthetic views already in memory (this measures the training step, not the input pipeline),
the view counts of each method's config (SwAV 2 x size + 6 x size*96/224, DINO 2 x size +
8 x size*96/224, MoCo v2, BYOL, SimCLR, Barlow Twins and VICReg 2 x size, SparK 1 x size) and its
default heads. Every registered method is measured
(medssl.pretrain.methods.registry), with no warm-up of its learning rate.
Each method runs in its own process (clean peak memory). Images/s counts source images (each
with all its views) per second: batch / median step time over --steps timed steps after --warmup.

``bare_<method>`` runs the backbone and projection-head passes of a method bare: its overhead is its step time over
that one's (``BASELINES``; a method without one is compared with ``supervised``, report only).
With ``--store`` the views come from a slice store through SliceStoreDataModule, and images/s
is batch / median step-to-step interval (waits for data count).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import common
from medssl.pretrain.overhead import BASELINES, build, view_shapes


def method_names() -> list[str]:
    """What this benchmark can run: the supervised step, every registered method, SparK dense."""
    return ["supervised", *common.methods(), "spark_dense"]


def baseline(method: str) -> str:
    return BASELINES.get(method, "supervised")


class Views(torch.utils.data.Dataset):
    def __init__(self, sizes, n):
        self.views = [torch.randn(n, 3, s, s) for s in sizes]

    def __len__(self):
        return len(self.views[0])

    def __getitem__(self, i):
        return [v[i] for v in self.views]


def now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def synthetic_data(args, method: str):
    return torch.utils.data.DataLoader(Views(view_shapes(method, args.size), args.batch * 2),
                                       batch_size=args.batch, shuffle=False, drop_last=True,
                                       pin_memory=torch.cuda.is_available())


def store_data(args):
    from medssl.pretrain.datamodule import SliceStoreDataModule

    return SliceStoreDataModule(str(args.store), views=json.loads(args.views),
                                intensity=json.loads(args.intensity), batch_size=args.batch,
                                num_workers=args.workers, augment_on="auto")


def run_one(args, method: str) -> dict:
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        """Each step's duration, and when each step ended."""

        def __init__(self):
            self.steps, self.ends = [], []

        def on_train_batch_start(self, *a):
            self.start = now()

        def on_train_batch_end(self, *a):
            self.ends.append(now())
            self.steps.append(self.ends[-1] - self.start)

    module = build(method, args.arch)
    module.hparams.channels_last = args.channels_last
    module.hparams.compile = args.compile
    clock = Clock()
    trainer = pl.Trainer(max_steps=args.warmup + args.steps, accelerator="auto", devices=1,
                         precision=args.precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if args.store:
        trainer.fit(module, datamodule=store_data(args))
    else:
        trainer.fit(module, synthetic_data(args, method))
    step = statistics.median(clock.steps[args.warmup:])
    ends = clock.ends[max(args.warmup - 1, 0):]
    interval = statistics.median(b - a for a, b in zip(ends, ends[1:]))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"method": method, "images_per_s": args.batch / (interval if args.store else step),
            "step_s": step, "interval_s": interval, "peak_memory_mib": peak,
            "memory_kind": "cuda allocated" if torch.cuda.is_available() else "process RSS high-water"}


def measure(methods: list[str], *, arch: str, size: int, batch: int, precision: str,
            channels_last: bool = False, compile: bool = False, steps: int = 5, warmup: int = 2,
            store: Path | None = None, views: list[dict] | None = None, intensity: dict | None = None,
            workers: int = 0) -> list[dict]:
    """Time ``methods`` one after another in one fresh process (the first one's peak memory is
    its own); with ``store``, on views of that slice store made by SliceStoreDataModule."""
    cmd = common.python_command("train_throughput", "--single", *methods, "--arch", arch, "--size", str(size),
                                "--batch", str(batch), "--precision", precision, "--steps", str(steps),
                                "--warmup", str(warmup))
    cmd += ["--channels-last"] * channels_last + ["--compile"] * compile
    if store:
        cmd += ["--store", str(store), "--views", json.dumps(views), "--intensity", json.dumps(intensity),
                "--workers", str(workers)]
    proc = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or len(results) != len(methods):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(methods)} failed: {last}\n{proc.stderr[-3000:]}")
    return results


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
    ap.add_argument("--methods", nargs="+", default=method_names(),
                    help=f"of {', '.join(method_names())} and bare_<method> (medssl.pretrain.overhead.BARE_PASSES)")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    ap.add_argument("--single", nargs="+", help=argparse.SUPPRESS)  # the measuring process
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--views", help=argparse.SUPPRESS)
    ap.add_argument("--intensity", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        for method in args.single:
            print("RESULT " + json.dumps(run_one(args, method)), flush=True)
        return
    rows = []
    for method in args.methods:
        try:
            rows += measure([method], arch=args.arch, size=args.size, batch=args.batch,
                            precision=args.precision, channels_last=args.channels_last,
                            compile=args.compile, steps=args.steps, warmup=args.warmup)
        except RuntimeError as error:
            sys.exit(str(error))
        print(f"{method:10s} {rows[-1]['images_per_s']:8.1f} img/s  peak {rows[-1]['peak_memory_mib']:.0f} MiB",
              flush=True)
    base = next((r for r in rows if r["method"] == "supervised"), None)
    device = common.machine(readable=True)
    title = (f"# Pre-training throughput on {device}: {args.arch}, {args.size} px, batch {args.batch}, "
             f"{args.precision}{', channels_last' if args.channels_last else ''}"
             f"{', compiled' if args.compile else ''}")
    lines = [title, "", "| method | images/s | step time vs supervised | peak memory (MiB) |",
             "|---|---:|---:|---:|"]
    for r in rows:
        ratio = r["step_s"] / base["step_s"] if base else float("nan")
        lines.append(f"| {r['method']} | {r['images_per_s']:.1f} | {ratio:.2f}x "
                     f"| {r['peak_memory_mib']:.0f} ({r['memory_kind']}) |")
    by = {r["method"]: r for r in rows}
    if "spark" in by and "spark_dense" in by:
        lines.append(f"\nSparK step vs the same encoder + decoder run densely: "
                     f"{by['spark']['step_s'] / by['spark_dense']['step_s']:.2f}x (goal <= 1.15x)")
    report = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "device": device, "results": rows}
    common.write(args.out, f"train-{common.machine()}-{args.arch}-{args.size}px-{args.precision}", report, lines)


if __name__ == "__main__":
    main()
