"""What the benchmarks share: this machine's name, the registered methods and their quick
configs (both from the registry, medssl.pretrain.methods), the command that made a report, and
writing a report: <out>/<stem>.json and <out>/<stem>.md, each file whole (medssl.files)."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from medssl.files import atomic_write_bytes
from medssl.pretrain.methods import method, method_names

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"  # where a benchmark writes by default (--out)


def machine(device: torch.device | str | None = None, *, readable: bool = False) -> str:
    """The name results are filed under: the GPU's on CUDA (spaces as underscores unless
    ``readable``), else ``<arch>-<cores>cpu``. ``device`` None: CUDA where there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name()
        return name if readable else name.replace(" ", "_")
    return f"{platform.machine()}-{os.cpu_count()}cpu"


def cores() -> int:
    """The cores this process may use (``taskset`` narrows them; ``os.cpu_count`` does not)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def methods() -> list[str]:
    """The registered pre-training methods, in the order they were registered."""
    return method_names()


def quick_config(name: str, folder: Path | None = None) -> Path:
    """Method ``name``'s quick config: ``folder/<name>_quick.yaml``, else the registry's
    (``$MEDSSL_PRETRAIN_CONFIGS``, else Pre-Training/configs)."""
    return (folder / f"{name}_quick.yaml").resolve() if folder else method(name).quick_config


def command(name: str, argv: list[str] | None = None) -> str:
    """How benchmark ``name`` was run: ``python -m benchmarks.<name> ARGS`` (``argv`` None: this
    process's arguments)."""
    return shlex.join(["python", "-m", f"benchmarks.{name}", *(sys.argv[1:] if argv is None else argv)])


def python_command(name: str, *args: str) -> list[str]:
    """The command line of benchmark ``name`` in a fresh Python (run it in ROOT)."""
    return [sys.executable, "-m", f"benchmarks.{name}", *args]


def header(name: str, argv: list[str] | None = None) -> dict:
    """Where, when and how a report was made: machine, device, torch, date and command."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    return {"machine": machine(), "device": device, "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command(name, argv)}


def write(out: Path, stem: str, report: dict, text: str | list[str], *, echo: bool = True) -> Path:
    """``report`` as ``out/<stem>.json`` and ``text`` (or its lines) as ``out/<stem>.md``, the
    Markdown printed too unless not ``echo``; ``out/<stem>``, beside which pictures may go."""
    if not isinstance(text, str):
        text = "\n".join(text) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{stem}.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(out / f"{stem}.md", text.encode())
    if echo:
        print(text, end="")
    return out / stem


def earlier_report(path: Path | None, name: str, settings: dict) -> dict | None:
    """The report at ``path`` (``--add-to``), read before any work is done: one benchmark ``name``
    wrote before on this machine with the same ``settings`` but other methods; None without a
    path. Any other file stops with what is wrong with it."""
    if path is None:
        return None
    try:
        earlier = json.loads(Path(path).read_text())
        before = comparable(earlier["settings"])
        earlier["settings"]["methods"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--add-to {path}: not a report this benchmark can read ({error!r})") from None
    made_by = str(earlier.get("runs", [earlier])[0].get("command", ""))
    if made_by.split()[2:3] != [f"benchmarks.{name}"]:
        raise SystemExit(f"--add-to {path}: a report of another benchmark (made by `{made_by}`), not of "
                         f"benchmarks.{name}")
    if earlier.get("machine") != machine():
        raise SystemExit(f"--add-to {path}: written on {earlier.get('machine')}, this is {machine()}: the "
                         "figures of two machines do not mix")
    now = comparable(settings)
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if differ:
        raise SystemExit(f"--add-to {path}: it was run with other settings ({', '.join(differ)}); give this "
                         "benchmark the options of its command, other methods only")
    return earlier


def add_to(earlier: dict | None, report: dict, sections: tuple[str, ...]) -> dict:
    """``report`` joined to ``earlier`` (``earlier_report``), so that a benchmark too long for one
    sitting runs a few methods at a time: each of ``sections`` (dicts keyed by method or backbone)
    keeps the earlier entries this run did not make again (this run's win);
    ``settings["methods"]`` lists the earlier methods, then this run's; ``runs`` lists every run's
    command, date and methods. ``earlier`` None: ``report`` with its one run listed."""
    if earlier is None:
        return {**report, "runs": [run_of(report)]}
    merged = {**report, **{s: {**earlier.get(s, {}), **report[s]} for s in sections}}
    methods = report["settings"]["methods"]
    merged["settings"] = {**report["settings"], "methods": [m for m in earlier["settings"]["methods"]
                                                            if m not in methods] + list(methods)}
    merged["runs"] = earlier.get("runs", [run_of(earlier)]) + [run_of(report)]
    return merged


def run_of(report: dict) -> dict:
    return {"command": report["command"], "date": report["date"], "methods": list(report["settings"]["methods"])}


def comparable(settings: dict) -> dict:
    """``settings`` without what may differ between the runs of one report: the methods, and the
    fine-tuning's CPU time and schedule file path (its settings are compared)."""
    out = json.loads(json.dumps({k: v for k, v in settings.items() if k != "methods"}))
    if out.get("finetune"):
        out["finetune"] = {k: v for k, v in out["finetune"].items() if k not in ("cpu_minutes", "schedule")}
    return out


def command_lines(report: dict) -> list[str]:
    """The Markdown lines saying how a report was made: its command, or each run's when it was
    made a few methods at a time (``add_to``)."""
    runs = report.get("runs") or [run_of(report)]
    if len(runs) == 1:
        return [f"- command: `{runs[0]['command']}`"]
    return ["- made in runs of a few methods each (--add-to):"] + [
        f"  - {', '.join(r['methods'])}: `{r['command']}` ({r['date']})" for r in runs]
