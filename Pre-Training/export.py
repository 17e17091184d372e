"""Export the backbone of a pre-training checkpoint on demand (e.g. a run still going on).

    python Pre-Training/export.py runs/swav/checkpoints/last.ckpt [--out swav_backbone.pt]

Writes the same file as the end of training: torchvision key names, no fc, plain metadata.
The checkpoint is read through the one loader (medssl.checkpoints), safely.
"""
import argparse
import sys
from pathlib import Path

import torch

from medssl.checkpoints import CheckpointError, CheckpointFormat, load_backbone
from medssl.checkpoints.export import export_pretrained


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, help="default: <method>_backbone.pt beside the checkpoint")
    args = ap.parse_args(argv)
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
    out = args.out or args.checkpoint.parent / f"{report.method}_backbone.pt"
    export_pretrained(model, out, method=report.method, arch=report.arch, epoch=ckpt["epoch"],
                      step=ckpt["global_step"], model_config=ckpt.get("hyper_parameters", {}),
                      data_config=ckpt.get("datamodule_hyper_parameters", {}))
    print(f"exported {report.method} {report.arch} backbone (epoch {ckpt['epoch']}, step "
          f"{ckpt['global_step']}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
