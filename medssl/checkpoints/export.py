"""Export a pre-trained backbone: torchvision key names, no ``fc``, plain-type metadata, so it
loads with ``torch.load(path, weights_only=True)`` and ``resnet.load_state_dict(sd, strict=False)``
misses only ``fc.weight`` / ``fc.bias``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

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
