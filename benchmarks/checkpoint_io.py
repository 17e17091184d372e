"""What a training checkpoint costs: size, atomic write (flushed to disk, renamed into place)
and the read-back check made before a resume, for each method on a ResNet-50 with an
optimizer state of two moments per parameter (Adam / LAMB; SGD and LARS keep one).

    python -m benchmarks.checkpoint_io [--arch resnet50] [--folder /tmp] [--repeats 3]

Each figure is the median of ``--repeats``. Run it on the file system the runs write to: a
cluster's shared file system is usually the slow part.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from medssl.pretrain.methods import METHODS
from medssl.pretrain.resume import AtomicCheckpointIO, checkpoint_problem


def measure(method: str, arch: str, folder: Path, repeats: int) -> dict:
    module = METHODS[method].cls(arch=arch)
    moments = {name: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
               for name, p in module.named_parameters() if p.requires_grad}
    checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [moments]}
    path = folder / f"{method}.ckpt"
    io = AtomicCheckpointIO()
    writes, checks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        io.save_checkpoint(checkpoint, path)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert checkpoint_problem(path) is None
        checks.append(time.perf_counter() - start)
    size = path.stat().st_size
    path.unlink()
    return {"method": method, "mb": size / 1e6, "write_s": statistics.median(writes),
            "check_s": statistics.median(checks)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--folder", type=Path, default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        print(f"| method | checkpoint (MB) | atomic write (s) | read-back check (s) |  ({args.arch})")
        print("|---|---:|---:|---:|")
        for method in common.methods():
            r = measure(method, args.arch, Path(tmp), args.repeats)
            print(f"| {r['method']} | {r['mb']:.0f} | {r['write_s']:.2f} | {r['check_s']:.2f} |")


if __name__ == "__main__":
    main()
