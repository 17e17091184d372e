"""Backbones as safetensors files (no pickle: reading one runs no code), and timm's folder layout.

Our metadata rides in safetensors' string metadata: ``{"format": "pt", "medssl": <JSON of the
export's metadata>}`` (safetensors takes str -> str only; ``"format": "pt"`` is what the Hugging
Face tools expect of PyTorch files). A timm folder is timm's Hugging Face Hub layout:
``model.safetensors`` beside a ``config.json`` with the architecture and the input's size, mean and
std, so ``timm.create_model("local-dir:FOLDER", pretrained=True, num_classes=N)`` builds it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..files import umask_mode

METADATA_KEY = "medssl"
TIMM_WEIGHTS, TIMM_CONFIG = "model.safetensors", "config.json"


def is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header that fits."""
    with open(path, "rb") as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:] == b"{"
            and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size)


def write_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict) -> Path:
    """``state`` and ``metadata`` (JSON-able) to ``path``, atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
              metadata={"format": "pt", METADATA_KEY: json.dumps(metadata)})
    umask_mode(tmp)
    os.replace(tmp, path)
    return path


def read_safetensors(path: Path) -> dict:
    """Our file as the dict ``torch.load`` gives for a ``.pt`` export (``state_dict`` and the
    metadata); any other safetensors file as its dict of tensors. ValueError if our metadata
    is no JSON object."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        ours = (f.metadata() or {}).get(METADATA_KEY)
    if ours is None:
        return tensors
    metadata = json.loads(ours)
    if not isinstance(metadata, dict):
        raise ValueError(f"its {METADATA_KEY!r} metadata is {type(metadata).__name__}, not a JSON object")
    return {**metadata, "state_dict": tensors}


def timm_config(arch: str, features: int, mean: float, std: float, size: int | None) -> dict:
    """timm's ``config.json`` for a trunk without classifier (``num_classes`` 0) fed grey images
    as three equal channels normalised with ``mean`` / ``std``, resized whole to ``size``."""
    side = size or 224
    return {"architecture": arch, "num_classes": 0, "num_features": features,
            "pretrained_cfg": {"input_size": [3, side, side], "interpolation": "bilinear",
                               "crop_pct": 1.0, "crop_mode": "center", "mean": [mean] * 3,
                               "std": [std] * 3, "num_classes": 0, "first_conv": "conv1",
                               "classifier": "fc"}}


def timm_weights(path: Path) -> Path | None:
    """The weights of a timm folder (``model.safetensors`` beside ``config.json``), or None."""
    if path.is_dir() and (path / TIMM_WEIGHTS).is_file() and (path / TIMM_CONFIG).is_file():
        return path / TIMM_WEIGHTS
    return None
