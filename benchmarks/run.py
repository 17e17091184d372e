"""The benchmark suite: data pipeline, training throughput per method, end-to-end pre-training,
ingestion and torch.compile, written to <out>/<machine>.json and <out>/<machine>.md.

    python -m benchmarks.run            # this machine's defaults (GPU figures on CUDA)
    python -m benchmarks.run --quick    # the CPU subset: a few minutes on 2 cores (no compile)

Sections (--sections):
  data    slice store + views vs one PNG file per slice (benchmarks/data_pipeline.py), the
          study's MoCo v2 views at 224 px from 256 px slices
  train   per method on synthetic in-memory views: images/s, peak memory, step time vs a plain
          supervised step, and vs the same backbone passes run bare (SparK: vs its dense run)
  e2e     pre-training from a phantom slice store through SliceStoreDataModule, vs the synthetic
          figure of `train`
  ingest  DICOM ingestion, ours vs the study's original script (benchmarks/ingest.py)
  compile per method, `--model.compile true` vs eager: step time, compilation time, graph
          breaks (benchmarks/compile_speed.py); left out of --quick (minutes per method on a CPU)

Every figure is a median over timed steps or runs after warm-up. A failing section is recorded
with its error and the others still run; the exit status is then 1.
"""
import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks import common
from medssl.pretrain.overhead import OVERHEAD_GOAL

SECTIONS = ("data", "train", "e2e", "ingest", "compile")
QUICK_E2E = ("mocov2", "spark")
BARE_GOAL = OVERHEAD_GOAL  # method step / its bare-passes step, at most
E2E_GOAL = 0.9  # end-to-end images/s / synthetic-input images/s, at least (GPU)
COMPILE_GOAL = 1.0  # compiled step / eager step, at most (GPU)
# Defaults per kind of run; the command line overrides them.
PROFILES = {
    "cuda": dict(arch="resnet50", size=224, batch=128, precision="bf16-mixed", channels_last=True,
                 workers=min(16, os.cpu_count() or 1), warmup=5, steps=20, rounds=2, repeats=3,
                 data_size=224, data_slices=4096, store_slices=2048, ingest_series=20, ingest_slices=100),
    "cpu": dict(arch="resnet50", size=64, batch=32, precision="32-true", channels_last=False,
                workers=2, warmup=2, steps=5, rounds=2, repeats=3,
                data_size=224, data_slices=256, store_slices=512, ingest_series=20, ingest_slices=100),
    "quick": dict(arch="resnet18", size=64, batch=16, precision="32-true", channels_last=False,
                  workers=2, warmup=2, steps=3, rounds=2, repeats=3,
                  data_size=224, data_slices=64, store_slices=256, ingest_series=3, ingest_slices=16),
}


def goal(name: str, measured: float, target: float, better: str, applies: bool = True) -> dict:
    """A record's ``goal_result``; ``passed`` is None where it is reported only (``applies`` False)."""
    passed = (measured <= target if better == "<=" else measured >= target) if applies else None
    return {"goal": name, "measured": round(measured, 3), "target": f"{better} {target}x", "passed": passed}


def verdict(g: dict) -> str:
    return {True: "PASS", False: "MISS", None: "report only"}[g["passed"]]


def goals_of(record: dict) -> list[dict]:
    """The goal results of a section: its own and its methods'."""
    found = [record["goal_result"]] if "goal_result" in record else []
    return found + [m["goal_result"] for m in record.get("methods", {}).values() if "goal_result" in m]


def train_options(opts) -> dict:
    return dict(arch=opts.arch, size=opts.size, batch=opts.batch, precision=opts.precision,
                channels_last=opts.channels_last, compile=opts.compile, steps=opts.steps,
                warmup=opts.warmup)


# --- sections: each returns its JSON record (each imports its benchmark: one that fails to
# import fails its section only) ---------------------------------------------------------------
def data_section(opts, sections: dict) -> dict:
    from benchmarks import data_pipeline
    from medssl.pretrain.overhead import config_views

    views, _ = config_views("mocov2", opts.data_size)  # the study's views, whatever the model size
    result = data_pipeline.measure(slices=opts.data_slices, size=opts.data_size, workers=opts.workers,
                                   repeats=opts.repeats, batch_size=opts.batch, views=views)
    result["goal_result"] = goal("store views/s / PNG views/s", result["ratio"], result["goal"], ">=")
    print(f"  store {result['store_views_per_s']:,.0f} views/s, PNG {result['png_views_per_s']:,.0f} "
          f"views/s: {result['ratio']:.1f}x ({verdict(result['goal_result'])})", flush=True)
    return result


def method_record(method: str, result: dict, baseline: dict, supervised: dict, applies: bool) -> dict:
    ratio = result["step_s"] / baseline["step_s"]
    return {"images_per_s": result["images_per_s"], "step_s": result["step_s"],
            "peak_memory_mib": result["peak_memory_mib"], "memory_kind": result["memory_kind"],
            "vs_supervised": result["step_s"] / supervised["step_s"],
            "baseline": baseline["method"], "baseline_images_per_s": baseline["images_per_s"],
            "baseline_step_s": baseline["step_s"], "ratio": ratio,
            "goal_result": goal(f"{method} step / {baseline['method']} step", ratio, BARE_GOAL, "<=", applies)}


def train_section(opts, sections: dict) -> dict:
    from benchmarks import train_throughput as throughput

    # A method and its baseline alternate for --rounds rounds in one process; each keeps its
    # fastest round (interference from the rest of the machine only ever slows a round down).
    groups = [["supervised"]] + [[m, throughput.baseline(m)] * opts.rounds for m in opts.methods]
    if opts.one_process:  # smoke tests: one start-up instead of one per method
        groups = [[name for group in groups for name in group]]
    measured, methods, errors = {}, {}, {}
    for names in groups:
        try:
            for r in throughput.measure(names, **train_options(opts)):
                earlier = measured.get(r["method"], r)  # a process's RSS high-water only grows:
                r["peak_memory_mib"] = min(r["peak_memory_mib"], earlier["peak_memory_mib"])  # 1st round's
                measured[r["method"]] = min(r, earlier, key=lambda x: x["step_s"])
        except RuntimeError as error:
            errors[names[0]] = str(error)
            print(f"  {names[0]:10s} FAILED: {str(error).splitlines()[0]}", flush=True)
            continue
        for name in dict.fromkeys(names):  # each once, after its rounds
            r = measured[name]
            if name == "supervised":
                print(f"  {name:10s} {r['images_per_s']:8.1f} img/s  peak {r['peak_memory_mib']:.0f} MiB", flush=True)
            elif name in opts.methods and "supervised" in measured:
                m = methods[name] = method_record(name, r, measured[throughput.baseline(name)], measured["supervised"],
                                                  applies=name in throughput.BASELINES)
                print(f"  {name:10s} {m['images_per_s']:8.1f} img/s  peak {m['peak_memory_mib']:.0f} MiB  "
                      f"{m['vs_supervised']:.2f}x supervised  {m['ratio']:.2f}x {m['baseline']} "
                      f"({m['baseline_images_per_s']:.1f} img/s): {verdict(m['goal_result'])}", flush=True)
    if "supervised" not in measured:
        raise RuntimeError(errors["supervised"])
    supervised = {k: measured["supervised"][k] for k in ("images_per_s", "step_s", "peak_memory_mib", "memory_kind")}
    return {"status": "failed" if errors else "ok", "errors": errors, "supervised": supervised, "methods": methods}


def e2e_section(opts, sections: dict) -> dict:
    from benchmarks import train_throughput as throughput
    from medssl.data.phantom import write_phantom_store
    from medssl.pretrain.overhead import config_views

    synthetic = sections.get("train", {}).get("methods", {})
    methods = [m for m in opts.methods if not opts.quick or m in QUICK_E2E]
    slices = max(opts.store_slices, opts.batch * (opts.warmup + opts.steps + 1))  # no epoch end
    store_size = max(256, opts.size)
    on_gpu = torch.cuda.is_available()
    results, errors = {}, {}
    with tempfile.TemporaryDirectory(prefix="medssl-e2e-bench-") as work:
        store = write_phantom_store(Path(work) / "store", patients=-(-slices // 32), slices_per_patient=32,
                                    size=store_size, seed=0, workers=opts.workers, progress=False)
        print(f"  phantom store: {len(store)} slices of {store_size} px", flush=True)
        for method in methods:
            views, intensity = config_views(method, opts.size)
            try:
                (result,) = throughput.measure([method], **train_options(opts), store=store.path, views=views,
                                               intensity=intensity, workers=opts.workers)
            except RuntimeError as error:
                errors[method] = str(error)
                print(f"  {method:10s} FAILED: {str(error).splitlines()[0]}", flush=True)
                continue
            record = {"images_per_s": result["images_per_s"], "interval_s": result["interval_s"],
                      "step_s": result["step_s"]}
            if method in synthetic:
                record["synthetic_images_per_s"] = synthetic[method]["images_per_s"]
                record["ratio"] = result["images_per_s"] / record["synthetic_images_per_s"]
                record["goal_result"] = goal(f"{method} end-to-end / synthetic input", record["ratio"],
                                             E2E_GOAL, ">=", applies=on_gpu)
            results[method] = record
            ratio = f", {record['ratio']:.2f}x synthetic" if "ratio" in record else ""
            print(f"  {method:10s} {record['images_per_s']:8.1f} img/s{ratio}", flush=True)
    note = None if on_gpu else "CPU: workers and training share the cores, a miss is expected (report only)"
    return {"status": "failed" if errors else "ok", "errors": errors, "note": note,
            "store": {"slices": len(store), "size": store_size}, "workers": opts.workers, "methods": results}


def ingest_section(opts, sections: dict) -> dict:
    from benchmarks import ingest

    result = ingest.measure(series=opts.ingest_series, slices=opts.ingest_slices, repeats=opts.repeats,
                            workers=opts.workers)
    base = result["slices_per_s"]["original_png8_single_process"]
    result["vs_original"] = {k: round(v / base, 2) for k, v in result["slices_per_s"].items()}
    for name, value in result["slices_per_s"].items():
        print(f"  {name:34s} {value:8.1f} slices/s  {result['vs_original'][name]:.1f}x", flush=True)
    return result


def compile_section(opts, sections: dict) -> dict:
    from benchmarks import compile_speed as speed

    on_gpu = torch.cuda.is_available()
    results, errors = {}, {}
    for method in opts.methods:
        try:
            (r,) = speed.measure([method], arch=opts.arch, size=opts.size, batch=opts.batch,
                                 precision=opts.precision, channels_last=opts.channels_last,
                                 steps=opts.steps, warmup=opts.warmup, rounds=opts.rounds)
        except RuntimeError as error:
            errors[method] = str(error)
            print(f"  {method:10s} FAILED: {str(error).splitlines()[0]}", flush=True)
            continue
        r["goal_result"] = goal(f"{method} compiled step / eager step", r["ratio"], COMPILE_GOAL, "<=",
                                applies=on_gpu)
        results[method] = r
        print(f"  {method:10s} eager {r['eager_step_s']:.3f} s, compiled {r['compiled_step_s']:.3f} s: "
              f"{r['ratio']:.2f}x; compilation {r['compile_s']:.0f} s, {r['graphs']} graph(s), "
              f"{r['graph_breaks']} graph breaks", flush=True)
    note = None if on_gpu else "CPU: Inductor's CPU code, not the GPU's; report only"
    return {"status": "failed" if errors else "ok", "errors": errors, "note": note, "methods": results}


SECTION_RUNNERS = {"data": data_section, "train": train_section, "e2e": e2e_section, "ingest": ingest_section,
                   "compile": compile_section}
TITLES = {"data": "Data pipeline (slice store vs PNG files, MoCo v2 views)",
          "train": "Training throughput (synthetic in-memory views)",
          "e2e": "End-to-end pre-training (phantom slice store, SliceStoreDataModule)",
          "ingest": "Ingestion of 512x512 DICOM (ours vs the original script)",
          "compile": "torch.compile vs eager (synthetic in-memory views)"}


def run_section(name: str, opts, sections: dict) -> None:
    print(f"== {name}: {TITLES[name]}", flush=True)
    start = time.perf_counter()
    try:
        record = SECTION_RUNNERS[name](opts, sections)
    except Exception as error:  # recorded; the other sections still run
        record = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()[-4000:]}
        print(f"  FAILED: {record['error']}", flush=True)
    record.setdefault("status", "ok")
    record["seconds"] = round(time.perf_counter() - start, 1)
    sections[name] = record


# --- the report ------------------------------------------------------------------------------
def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def goal_cells(record: dict) -> list:
    g = record.get("goal_result")
    return [f"{g['measured']:.2f}x", g["target"], verdict(g)] if g else ["", "", ""]


def data_lines(record: dict) -> list[str]:
    settings = ", ".join(f"{k} {v}" for k, v in record.items() if type(v) is int)
    rows = [[k, f"{v:,.1f}"] for k, v in record.items() if k.endswith("_per_s")]
    return [settings + ".", ""] + table(["figure", "value"], rows) + [
        "", "| goal | measured | target | result |", "|---|---|---|---|",
        f"| {record['goal_result']['goal']} | " + " | ".join(goal_cells(record)) + " |"]


def train_lines(record: dict) -> list[str]:
    s = record["supervised"]
    rows = [["supervised", f"{s['images_per_s']:.1f}", f"{s['peak_memory_mib']:.0f}", "1.00x", "", "", "", "", ""]]
    for method, r in record["methods"].items():
        rows.append([method, f"{r['images_per_s']:.1f}", f"{r['peak_memory_mib']:.0f}", f"{r['vs_supervised']:.2f}x",
                     r["baseline"], f"{r['baseline_images_per_s']:.1f}", *goal_cells(r)])
    return table(["method", "images/s", f"peak memory (MiB, {s['memory_kind']})", "step vs supervised",
                  "baseline", "baseline images/s", "step vs baseline", "goal", "result"], rows)


def e2e_lines(record: dict) -> list[str]:
    rows = [[m, f"{r['images_per_s']:.1f}",
             f"{r['synthetic_images_per_s']:.1f}" if "synthetic_images_per_s" in r else "not measured",
             *goal_cells(r)] for m, r in record["methods"].items()]
    lines = [f"Phantom store of {record['store']['slices']} slices of {record['store']['size']} px, "
             f"{record['workers']} workers; images/s from the median step-to-step interval.", ""]
    lines += table(["method", "images/s", "synthetic images/s", "ratio", "goal", "result"], rows)
    return lines + (["", record["note"]] if record["note"] else [])


def ingest_lines(record: dict) -> list[str]:
    rows = [[k, f"{v:,.1f}", f"{record['vs_original'][k]:.1f}x"] for k, v in record["slices_per_s"].items()]
    return [f"{record['slices']} slices ({record['series']} series), {record['workers']} workers, "
            f"median of {record['repeats']}.", ""] + table(["pipeline", "slices/s", "vs original"], rows)


def compile_lines(record: dict) -> list[str]:
    rows = [[m, f"{r['eager_step_s']:.3f}", f"{r['compiled_step_s']:.3f}", f"{r['compile_s']:.0f}", r["graphs"],
             r["graph_breaks"], f"{r['loss_rel_diff_first_step']:.0e}", *goal_cells(r)]
            for m, r in record["methods"].items()]
    lines = ["Compilation: the first compiled run's warm-up steps minus as many compiled steps, an empty "
             "Inductor cache; loss difference: relative, at the first step, eager vs compiled from the "
             "same weights and views.", ""]
    lines += table(["method", "eager step (s)", "compiled step (s)", "compilation (s)", "graphs", "graph breaks",
                    "loss difference", "compiled / eager", "goal", "result"], rows)
    return lines + (["", record["note"]] if record["note"] else [])


SECTION_LINES = {"data": data_lines, "train": train_lines, "e2e": e2e_lines, "ingest": ingest_lines,
                 "compile": compile_lines}


def markdown(report: dict) -> str:
    s = report["settings"]
    goals = [g for record in report["sections"].values() for g in goals_of(record)]
    counts = {v: sum(verdict(g) == v for g in goals) for v in ("PASS", "MISS", "report only")}
    lines = [f"# Benchmarks on {report['machine']}", "",
             f"- command: `{report['command']}`",
             f"- device: {report['device']}; torch {report['torch']}; {report['date']}",
             f"- {s['arch']}, {s['size']} px, batch {s['batch']}, {s['precision']}, channels_last "
             f"{s['channels_last']}, compile {s['compile']}, {s['workers']} workers",
             f"- training figures: median of {s['steps']} timed steps after {s['warmup']} warm-up steps, "
             f"the faster of {s['rounds']} rounds, method and baseline alternating; "
             f"data and ingestion figures: median of {s['repeats']} runs",
             "- goals: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    for name, record in report["sections"].items():
        lines += ["", f"## {TITLES[name]}", ""]
        if "error" in record:
            lines.append(f"FAILED: `{record['error']}`")
            continue
        lines += SECTION_LINES[name](record)
        for method, error in record.get("errors", {}).items():
            lines += ["", f"FAILED: {method} (the error is in the JSON): `{error.splitlines()[0]}`"]
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the CPU subset: resnet18, 64 px, batch 16, few steps")
    ap.add_argument("--arch")
    ap.add_argument("--size", type=int, help="training image side in pixels")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--precision", choices=("32-true", "bf16-mixed", "16-mixed"))
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--workers", type=int, help="DataLoader / ingestion worker processes")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, help="default: all (--quick: all but compile)")
    ap.add_argument("--methods", nargs="+", choices=common.methods(), default=common.methods())
    ap.add_argument("--steps", type=int, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, help="untimed steps before them")
    ap.add_argument("--rounds", type=int, help="alternating rounds of each method and its baseline")
    ap.add_argument("--repeats", type=int, help="timed runs of the data and ingestion figures")
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    ap.add_argument("--one-process", action="store_true", help=argparse.SUPPRESS)  # smoke tests only
    opts = ap.parse_args()
    profile = PROFILES["quick" if opts.quick else "cuda" if torch.cuda.is_available() else "cpu"]
    for key, value in profile.items():
        if getattr(opts, key, None) is None:
            setattr(opts, key, value)
    if opts.sections is None:
        opts.sections = [s for s in SECTIONS if not (opts.quick and s == "compile")]
    if min(opts.warmup, opts.steps, opts.rounds, opts.repeats) < 1:
        ap.error("--warmup, --steps, --rounds and --repeats must be at least 1")
    return opts


def device_name() -> str:
    cpu = f"{cpu_model()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}); CPU {cpu}"
    return f"CPU {cpu}"


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def main() -> int:
    opts = parse_args()
    settings = {k: getattr(opts, k) for k in ("quick", "arch", "size", "batch", "precision", "channels_last",
                                              "compile", "workers", "warmup", "steps", "rounds", "repeats", "methods")}
    report = {"machine": common.machine() + ("-quick" if opts.quick else ""), "device": device_name(),
              "torch": torch.__version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": common.command("run"), "settings": settings, "sections": {}}
    print(f"benchmarks on {report['device']}: " + ", ".join(f"{k} {v}" for k, v in settings.items()), flush=True)
    for name in opts.sections:
        run_section(name, opts, report["sections"])
    prefix = common.write(opts.out, report["machine"], report, markdown(report), echo=False)
    print(f"wrote {prefix}.json and {prefix}.md")
    return int(any(r["status"] == "failed" for r in report["sections"].values()))


if __name__ == "__main__":
    sys.exit(main())
