"""Export the backbone of a pre-training checkpoint on demand (e.g. a run still going on).

    python Pre-Training/export.py runs/swav/checkpoints/last.ckpt [--out swav_backbone.pt]

Writes the same file as the end of training: torchvision key names, no fc, plain metadata.
The checkpoint is read through the one loader (medssl.checkpoints), safely.
"""
import argparse
import hashlib
import sys
from pathlib import Path

import torch

from medssl.checkpoints import CheckpointError, load_backbone
from medssl.checkpoints.export import export_backbone


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
    if report.format != "medssl Lightning checkpoint":
        print(f"error: {args.checkpoint}: a {report.format}, not a medssl pre-training checkpoint",
              file=sys.stderr)
        return 1
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)  # ours: plain types
    data = ckpt.get("datamodule_hyper_parameters", {})
    manifest = Path(str(data.get("store", ""))) / "manifest.csv"
    model.fc = torch.nn.Identity()
    out = args.out or args.checkpoint.parent / f"{report.method}_backbone.pt"
    export_backbone(model, out, method=report.method, arch=report.arch, epochs=ckpt["epoch"],
                    steps=ckpt["global_step"],
                    config={"model": ckpt.get("hyper_parameters", {}), "data": data},
                    store_manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest()
                    if manifest.is_file() else None)
    print(f"exported {report.method} {report.arch} backbone (epoch {ckpt['epoch']}, step "
          f"{ckpt['global_step']}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
