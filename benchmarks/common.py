"""How a benchmark names its machine and writes its results: benchmarks/results/<name>-<machine>.{json,md}."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine(device: torch.device | str = "cpu") -> str:
    """The GPU's name on CUDA, else ``<arch>-<cores>cpu``."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name().replace(" ", "_")
    return f"{platform.machine()}-{os.cpu_count()}cpu"


def write(out: Path, name: str, report: dict, lines: list[str]) -> Path:
    """``report`` as JSON and ``lines`` as Markdown under ``out``, the Markdown printed too."""
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / f"{name}-{report['machine']}"
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return prefix
