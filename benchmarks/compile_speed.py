"""torch.compile against eager per method: step time, compilation time, graph breaks.

    python -m benchmarks.compile_speed                                           # CPU
    python -m benchmarks.compile_speed --arch resnet50 --size 224 --batch 128 \\
        --precision bf16-mixed --channels-last                                   # GPU

Each method trains on synthetic in-memory views (those of train_throughput.py: the study's
view counts and heads) in a fresh process, eager and with ``--model.compile true`` (the whole
training loss compiled: PretrainMethod.configure_model), alternating for --rounds rounds; each
keeps its fastest median step over --steps timed steps after --warmup. The compilation falls in
the first compiled steps: compile_s = those warm-up steps minus as many compiled steps, cold
(an empty Inductor cache). Graphs and graph breaks are TorchDynamo's counts over the first
compiled run. Both runs start from the same weights and views, so their losses are compared
step by step (SparK's differ: compiled code draws its masks from another random stream).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from benchmarks import train_throughput as bench


def run_one(args, method: str, compile: bool) -> dict:
    """One training run: each step's time and loss."""
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        def __init__(self):
            self.steps, self.losses = [], []

        def on_train_batch_start(self, *a):
            self.start = bench.now()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.steps.append(bench.now() - self.start)
            self.losses.append(outputs["loss"].detach())

    pl.seed_everything(0, verbose=False)  # the same weights and views for both runs
    module = bench.build(method, args.arch)
    module.hparams.channels_last = args.channels_last
    module.hparams.compile = compile
    clock = Clock()
    trainer = pl.Trainer(max_steps=args.warmup + args.steps, accelerator="auto", devices=1,
                         precision=args.precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(module, bench.synthetic_data(args, method))
    return {"step_s": statistics.median(clock.steps[args.warmup:]), "steps_s": clock.steps,
            "losses": [float(x) for x in clock.losses]}


def run_method(args, method: str) -> dict:
    """Eager and compiled runs of ``method``, alternating over rounds (this process)."""
    from torch._dynamo.utils import counters

    eager, compiled, dynamo = [], [], None
    for _ in range(args.rounds):
        eager.append(run_one(args, method, compile=False))
        compiled.append(run_one(args, method, compile=True))
        if dynamo is None:  # the first (cold) compilation only
            dynamo = {"graphs": counters["stats"]["unique_graphs"],
                      "graph_breaks": sum(counters["graph_break"].values()),
                      "graph_break_reasons": sorted(r.splitlines()[0] for r in counters["graph_break"])}
    best_eager, best_compiled = (min(runs, key=lambda r: r["step_s"]) for runs in (eager, compiled))
    first_eager, first_compiled = eager[0], compiled[0]
    warm = first_compiled["steps_s"][:args.warmup]
    rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(first_eager["losses"], first_compiled["losses"])]
    return {"method": method, "eager_step_s": best_eager["step_s"], "compiled_step_s": best_compiled["step_s"],
            "ratio": best_compiled["step_s"] / best_eager["step_s"],
            "first_step_s": {"eager": first_eager["steps_s"][0], "compiled": warm[0]},
            "compile_s": sum(warm) - len(warm) * first_compiled["step_s"],
            "rounds_step_s": {"eager": [r["step_s"] for r in eager], "compiled": [r["step_s"] for r in compiled]},
            **dynamo, "loss_rel_diff_first_step": rel[0], "loss_rel_diff_max": max(rel),
            "losses": {"eager": first_eager["losses"], "compiled": first_compiled["losses"]}}


def measure(methods: list[str], *, arch: str, size: int, batch: int, precision: str,
            channels_last: bool = False, steps: int = 5, warmup: int = 3, rounds: int = 4,
            threads: int | None = None) -> list[dict]:
    """Each method in a fresh process with an empty Inductor cache (a cold compilation);
    ``threads``: CPU threads of eager and compiled code alike (default: torch's)."""
    results = []
    for method in methods:
        cmd = common.python_command("compile_speed", "--single", method, "--arch", arch, "--size", str(size),
                                    "--batch", str(batch), "--precision", precision, "--steps", str(steps),
                                    "--warmup", str(warmup), "--rounds", str(rounds),
                                    *["--channels-last"] * channels_last)
        with tempfile.TemporaryDirectory(prefix="medssl-inductor-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            proc = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, env=env)
        found = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or len(found) != 1:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{method} failed: {last}\n{proc.stderr[-3000:]}")
        results += found
    return results


def table(rows: list[dict]) -> list[str]:
    lines = ["| method | eager step (s) | compiled step (s) | compiled / eager | compilation (s) "
             "| graphs | graph breaks | loss difference, step 1 / largest |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['eager_step_s']:.3f} | {r['compiled_step_s']:.3f} | {r['ratio']:.2f}x "
                     f"| {r['compile_s']:.0f} | {r['graphs']} | {r['graph_breaks']} "
                     f"| {r['loss_rel_diff_first_step']:.0e} / {r['loss_rel_diff_max']:.0e} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4, help="after the first, compiled runs reuse the compiled code")
    ap.add_argument("--threads", type=int, help="CPU threads (OMP_NUM_THREADS) of both; default: torch's")
    ap.add_argument("--methods", nargs="+", choices=common.methods(), default=common.methods())
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    ap.add_argument("--single", help=argparse.SUPPRESS)  # the measuring process
    args = ap.parse_args()
    if args.single:
        print("RESULT " + json.dumps(run_method(args, args.single)), flush=True)
        return
    start, rows = time.perf_counter(), []
    for method in args.methods:
        try:
            rows += measure([method], arch=args.arch, size=args.size, batch=args.batch, precision=args.precision,
                            channels_last=args.channels_last, steps=args.steps, warmup=args.warmup,
                            rounds=args.rounds, threads=args.threads)
        except RuntimeError as error:
            sys.exit(str(error))
        r = rows[-1]
        print(f"{method:8s} eager {r['eager_step_s']:.3f} s  compiled {r['compiled_step_s']:.3f} s  "
              f"{r['ratio']:.2f}x  compilation {r['compile_s']:.0f} s  graphs {r['graphs']}  "
              f"breaks {r['graph_breaks']}", flush=True)
    device = common.machine(readable=True)
    command = common.command("compile_speed")
    lines = [
        f"# torch.compile vs eager on {device}: {args.arch}, {args.size} px, batch {args.batch}, "
        f"{args.precision}{', channels_last' if args.channels_last else ''}"
        f"{f', {args.threads} CPU thread(s)' if args.threads else ''}", "",
        f"- command: `{command}`; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}; "
        f"{time.perf_counter() - start:.0f} s in all",
        f"- step: median of {args.steps} timed steps after {args.warmup} warm-up steps, the faster of "
        f"{args.rounds} rounds, eager and compiled alternating; compilation: the first compiled run's "
        "warm-up steps minus as many compiled steps (an empty Inductor cache)",
        "- loss difference: relative, eager vs compiled run from the same weights and views, at the "
        "first step and the largest over all steps (SparK's masks come from another random stream "
        "when compiled)", "",
        *table(rows)]
    report = {"command": command, "device": device, "torch": torch.__version__,
              "args": {k: v for k, v in vars(args).items() if k not in ("out", "single")}, "results": rows}
    common.write(args.out, f"compile-{common.machine()}-{args.arch}-{args.size}px-{args.precision}", report, lines)


if __name__ == "__main__":
    main()
