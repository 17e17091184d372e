"""The scores the learning benchmarks keep in their work folder (``work/scores/``), so that a run
killed while scoring goes on from where it was: each file holds the settings it was made with, is
re-used only by a run with the same ones (the same backbone file included), and is written whole
or not at all (medssl.files)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from medssl.checksums import file_digest
from medssl.files import atomic_write_bytes


def safe_name(name: str) -> str:
    """``name`` as a file name."""
    return re.sub(r"[^\w.]+", "-", name).strip("-")


def backbone_digest(checkpoint: str | None) -> str | None:
    return file_digest(Path(checkpoint)) if checkpoint else None


def kept(path: Path, settings: dict) -> dict | None:
    """What ``path`` keeps, if it was made with ``settings`` (compared as JSON has them)."""
    if not path.exists():
        return None
    found = json.loads(path.read_text())
    return found if found.get("settings") == json.loads(json.dumps(settings)) else None


def keep(path: Path, settings: dict, **values) -> None:
    """Keep ``values`` in ``path`` with the ``settings`` they were made with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps({"settings": settings, **values}).encode())


def kept_scores(work: Path | None, name: str, checkpoint: str | None, arch: str, mapping, labels, seeds,
                score) -> dict:
    """``score()``, or the scores a run with the same settings kept in ``work/scores/``."""
    if work is None:
        return score()
    settings = {"name": name, "arch": arch, "input": mapping.as_dict(), "labels": list(labels),
                "seeds": list(seeds), "backbone_sha256": backbone_digest(checkpoint)}
    path = work / "scores" / (safe_name(name) + ".json")
    found = kept(path, settings)
    if found is not None:
        print(f"  scores of {name}: kept from an earlier run ({path})", flush=True)
        return with_int_label_keys(found["entry"])
    entry = score()
    keep(path, settings, entry=entry)
    return entry


def with_int_label_keys(entry: dict) -> dict:
    """JSON keeps the labels-per-class keys as strings; the comparison wants the numbers."""
    for record in entry["tasks"].values():
        record["scores"] = {probe: {int(n): v for n, v in by_n.items()} for probe, by_n in record["scores"].items()}
    return entry
