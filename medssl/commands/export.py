"""Export the backbone of a pre-training checkpoint on demand (e.g. a run still going on).

    medssl export runs/swav/checkpoints/last.ckpt [--out swav_backbone.pt]
    medssl export runs/swav/checkpoints/last.ckpt --format safetensors   # or timm (a folder)

Writes the same file as the end of training: torchvision key names, no fc, plain metadata;
--format safetensors or timm (timm's folder: model.safetensors and config.json) for other tools.
The checkpoint is read through the one loader (medssl.checkpoints), safely.
(python Pre-Training/export.py is the same command.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..checkpoints import CheckpointError, CheckpointFormat, load_backbone
from ..checkpoints.export import FILE_FORMATS, export_pretrained

SUFFIXES = {"pt": ".pt", "safetensors": ".safetensors", "timm": "_timm"}  # timm: a folder


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a pre-training checkpoint (runs/NAME/checkpoints/*.ckpt)")
    ap.add_argument("--out", type=Path, help="default: <method>_backbone_step<N>.pt (.safetensors, _timm/) "
                    "beside the checkpoint (the step keeps it apart from the run's own final export)")
    ap.add_argument("--format", choices=FILE_FORMATS, default="pt",
                    help="pt (torch.save), safetensors, or timm (a folder timm.create_model "
                    "('local-dir:FOLDER') reads); default: pt")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    args = parser(prog).parse_args(argv)
    try:
        model, report = load_backbone(args.checkpoint, arch=None)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if report.format is not CheckpointFormat.MEDSSL_LIGHTNING:
        print(f"error: {args.checkpoint}: a {report.format}, not a medssl pre-training checkpoint",
              file=sys.stderr)
        return 1
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # ours: plain types
    model.fc = torch.nn.Identity()
    name = f"{report.method}_backbone_step{ckpt['global_step']}{SUFFIXES[args.format]}"
    out = args.out or args.checkpoint.parent / name
    export_pretrained(model, out, method=report.method, arch=report.arch, epoch=ckpt["epoch"],
                      step=ckpt["global_step"], model_config=ckpt.get("hyper_parameters", {}),
                      data_config=ckpt.get("datamodule_hyper_parameters", {}), file_format=args.format)
    print(f"exported {report.method} {report.arch} backbone (epoch {ckpt['epoch']}, step "
          f"{ckpt['global_step']}) to {out}")
    return 0
