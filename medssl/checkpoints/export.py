"""Export a pre-trained backbone: torchvision key names, no ``fc``, plain-type metadata, in the
formats people load (``FILE_FORMATS``):

- ``pt``: ``torch.save`` of ``{"state_dict": ..., **metadata}``; ``torch.load(path, weights_only=True)``
  reads it and ``resnet.load_state_dict(sd, strict=False)`` misses only ``fc.weight`` / ``fc.bias``.
- ``safetensors``: the same tensors, the metadata as JSON in safetensors' string metadata;
  ``safetensors.torch.load_file(path)`` gives the state dict.
- ``timm``: a folder in timm's Hugging Face Hub layout (``model.safetensors`` and ``config.json``:
  see ``safetensors_files``); timm's ResNets name their tensors as torchvision's do, which the
  export checks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..checksums import file_digest
from ..data.input_mapping import DEFAULT, InputMapping
from ..data.store import MANIFEST_FILE, stored_settings
from ..files import atomic_write_bytes
from ..models.backbone import feature_dim
from .safetensors_files import TIMM_CONFIG, TIMM_WEIGHTS, timm_config, write_safetensors

FORMAT = "medssl-backbone"
FILE_FORMATS = ("pt", "safetensors", "timm")


def plain(value):
    """JSON-safe copy (numbers, strings, lists, dicts); anything else becomes its string."""
    return json.loads(json.dumps(value, default=str))


def export_backbone(backbone: torch.nn.Module, path: str | Path, file_format: str = "pt", **metadata) -> Path:
    """Write the backbone's state dict and ``{"format": ..., "version": ..., **metadata}``
    atomically to ``path`` as ``file_format`` (one of ``FILE_FORMATS``; ``timm``: ``path`` is a
    folder, and ``metadata`` names the ``arch``)."""
    if file_format not in FILE_FORMATS:
        raise ValueError(f"unknown export format {file_format!r}; choose one of {FILE_FORMATS}")
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    stray = [k for k in state if k.startswith("fc.") or k.startswith("_orig_mod.")]
    if stray:
        raise ValueError(f"backbone state dict has keys that are not the trunk's: {stray[:3]}")
    meta = {"format": FORMAT, "version": 1, **plain(metadata)}
    path = Path(path)
    if file_format == "timm":
        return _export_timm(state, path, meta)
    if file_format == "safetensors":
        return write_safetensors(state, path, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"state_dict": state, **meta}, tmp)
    os.replace(tmp, path)
    return path


def _export_timm(state: dict[str, torch.Tensor], folder: Path, meta: dict) -> Path:
    import timm

    arch = meta.get("arch")
    if not arch:
        raise ValueError("a timm export needs the backbone's arch (e.g. arch='resnet50')")
    timm_keys = set(timm.create_model(arch, pretrained=False, num_classes=0).state_dict())
    if timm_keys != set(state):
        raise ValueError(f"timm's {arch} names its tensors otherwise: only in ours "
                         f"{sorted(set(state) - timm_keys)[:3]}, only in timm's {sorted(timm_keys - set(state))[:3]}")
    mapping = InputMapping.from_dict(meta["input"]) if "input" in meta else DEFAULT
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(state, folder / TIMM_WEIGHTS, meta)
    config = timm_config(arch, feature_dim(arch), mapping.mean, mapping.std, mapping.size)
    atomic_write_bytes(folder / TIMM_CONFIG, json.dumps(config, indent=2).encode())
    return folder


def store_manifest_sha256(store: str | Path | None) -> str | None:
    """sha256 of a slice store's manifest (which slices a model was trained on), if it exists."""
    manifest = Path(str(store or "")) / MANIFEST_FILE
    return file_digest(manifest) if store and manifest.is_file() else None


def pretraining_input(data_config) -> InputMapping:
    """What a pre-training run fed its backbone: ``data.intensity``, the first view's size, mean
    and std (defaults for what it leaves out), and the units of ``data.store``."""
    views = data_config.get("views") or [{}]
    settings = stored_settings(data_config["store"]) if data_config.get("store") else None
    return InputMapping.of_pretraining(data_config.get("intensity"), views[0],
                                       settings.get("units") if settings else None)


def export_pretrained(backbone: torch.nn.Module, path: str | Path, *, method: str, arch: str,
                      epoch: int, step: int, model_config: dict, data_config: dict,
                      file_format: str = "pt") -> Path:
    """The backbone of a pre-training run, with what made it: method, arch, epoch and step, the
    model's and data's settings, the input it was fed (``input``: ``pretraining_input``), and the
    hash of the store's manifest (``data_config["store"]``), as ``file_format``.
    Written at the end of training and by ``Pre-Training/export.py`` from a checkpoint."""
    return export_backbone(backbone, path, file_format, method=method, arch=arch, epochs=epoch, steps=step,
                           config={"model": dict(model_config), "data": dict(data_config)},
                           input=pretraining_input(data_config).as_dict(),
                           store_manifest_sha256=store_manifest_sha256(data_config.get("store")))
