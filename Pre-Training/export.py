"""Export the backbone of a pre-training checkpoint on demand (e.g. a run still going on).

    python Pre-Training/export.py lightning_logs/version_0/checkpoints/last.ckpt [--out swav_backbone.pt]

Writes the same file as the end of training: torchvision key names, no fc, plain metadata.
"""
import argparse
import hashlib
import sys
from pathlib import Path

import torch

from medssl.export import export_backbone
from medssl.models import build_backbone


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, help="default: <method>_backbone.pt beside the checkpoint")
    args = ap.parse_args(argv)
    try:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:
        print(f"error: {args.checkpoint}: not a readable medssl pre-training checkpoint ({err})",
              file=sys.stderr)
        return 1
    info = ckpt.get("medssl")
    if not info:
        print(f"error: {args.checkpoint}: not written by a medssl pre-training run", file=sys.stderr)
        return 1
    backbone = build_backbone(info["arch"])
    state = {k[len("backbone."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("backbone.")}
    backbone.load_state_dict(state)  # strict: every trunk tensor must be there
    data = ckpt.get("datamodule_hyper_parameters", {})
    manifest = Path(str(data.get("store", ""))) / "manifest.csv"
    out = args.out or args.checkpoint.parent / f"{info['method']}_backbone.pt"
    export_backbone(backbone, out, method=info["method"], arch=info["arch"], epochs=ckpt["epoch"],
                    steps=ckpt["global_step"],
                    config={"model": ckpt.get("hyper_parameters", {}), "data": data},
                    store_manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest()
                    if manifest.is_file() else None)
    print(f"exported {info['method']} {info['arch']} backbone (epoch {ckpt['epoch']}, step "
          f"{ckpt['global_step']}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
