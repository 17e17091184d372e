"""Export a pre-trained backbone: torchvision key names, no ``fc``, plain-type metadata, so it
loads with ``torch.load(path, weights_only=True)`` and ``resnet.load_state_dict(sd, strict=False)``
misses only ``fc.weight`` / ``fc.bias``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..checksums import file_digest
from ..data.input_mapping import InputMapping
from ..data.store import MANIFEST_FILE, stored_settings
from ..pretrain.views import ViewSpec

FORMAT = "medssl-backbone"


def plain(value):
    """JSON-safe copy (numbers, strings, lists, dicts); anything else becomes its string."""
    return json.loads(json.dumps(value, default=str))


def export_backbone(backbone: torch.nn.Module, path: str | Path, **metadata) -> Path:
    """Write ``{"state_dict": ..., "format": ..., **metadata}`` atomically to ``path``."""
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    stray = [k for k in state if k.startswith("fc.") or k.startswith("_orig_mod.")]
    if stray:
        raise ValueError(f"backbone state dict has keys that are not the trunk's: {stray[:3]}")
    payload = {"state_dict": state, "format": FORMAT, "version": 1, **plain(metadata)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def store_manifest_sha256(store: str | Path | None) -> str | None:
    """sha256 of a slice store's manifest (which slices a model was trained on), if it exists."""
    manifest = Path(str(store or "")) / MANIFEST_FILE
    return file_digest(manifest) if store and manifest.is_file() else None


def pretraining_input(data_config) -> InputMapping:
    """What a pre-training run fed its backbone: ``data.intensity``, the first view's size, mean
    and std (``ViewSpec`` defaults for what it leaves out), and the units of ``data.store``."""
    views = data_config.get("views") or [{}]
    view = ViewSpec.of({k: v for k, v in dict(views[0]).items() if k in ("size", "mean", "std")})
    settings = stored_settings(data_config["store"]) if data_config.get("store") else None
    return InputMapping.of_pretraining(data_config.get("intensity"), view,
                                       settings.get("units") if settings else None)


def export_pretrained(backbone: torch.nn.Module, path: str | Path, *, method: str, arch: str,
                      epoch: int, step: int, model_config: dict, data_config: dict) -> Path:
    """The backbone of a pre-training run, with what made it: method, arch, epoch and step, the
    model's and data's settings, the input it was fed (``input``: ``pretraining_input``), and the
    hash of the store's manifest (``data_config["store"]``).
    Written at the end of training and by ``Pre-Training/export.py`` from a checkpoint."""
    return export_backbone(backbone, path, method=method, arch=arch, epochs=epoch, steps=step,
                           config={"model": dict(model_config), "data": dict(data_config)},
                           input=pretraining_input(data_config).as_dict(),
                           store_manifest_sha256=store_manifest_sha256(data_config.get("store")))
