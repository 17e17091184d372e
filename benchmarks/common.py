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
