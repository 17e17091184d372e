"""Slice-store throughput: write, sequential read, random read, and random read through a
DataLoader with worker processes; 16-bit PNG-per-slice files as a baseline in the same run.

    python -m benchmarks.store_io [--slices 2000] [--size 256] [--repeats 3] [--workers 2]

Each figure is the median of ``--repeats`` timed runs after one warm-up. Reads are from the page
cache (the store was just written), which is what many-epoch training sees once data fits in RAM.
"""
import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks import common
from medssl.data import SliceStore, SliceStoreWriter


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Reader(Dataset):
    def __init__(self, read, n):
        self.read, self.n = read, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.from_numpy(self.read(i))


def loader_pass(read, n, workers):
    loader = DataLoader(Reader(read, n), batch_size=64, shuffle=True, num_workers=workers)
    for _ in loader:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()

    n, size = args.slices, args.size
    rng = np.random.default_rng(0)
    data = rng.integers(-1024, 3072, size=(n, size, size), dtype=np.int16)
    rows = [{"source": f"bench/{i}", "patient_id": f"p{i // 100}", "series_uid": f"s{i // 100}",
             "modality": "CT", "slice_index": i % 100, "position_mm": float(i % 100),
             "spacing_row_mm": 1.0, "spacing_col_mm": 1.0} for i in range(n)]
    work = Path(tempfile.mkdtemp(prefix="medssl-bench-"))
    order = rng.permutation(n)
    results = {}
    try:
        def write_store():
            with SliceStoreWriter(work / "store", size, overwrite=True) as writer:
                for start in range(0, n, 100):
                    writer.add(data[start:start + 100], rows[start:start + 100])

        results["store_write"] = n / timed(write_store, args.repeats)
        store = SliceStore(work / "store")
        results["store_read_sequential"] = n / timed(lambda: [store[i] for i in range(n)], args.repeats)
        results["store_read_random"] = n / timed(lambda: [store[i] for i in order], args.repeats)
        results[f"store_read_loader_{args.workers}_workers"] = n / timed(
            lambda: loader_pass(store.__getitem__, n, args.workers), args.repeats)

        png_dir = work / "png"
        png_dir.mkdir()

        def write_png():
            for i in range(n):  # 16-bit PNG of HU + 1024, the lossless per-file alternative
                Image.fromarray((data[i].astype(np.int32) + 1024).astype(np.uint16)).save(png_dir / f"{i}.png")

        def read_png(i):
            return (np.asarray(Image.open(png_dir / f"{i}.png"), dtype=np.int32) - 1024).astype(np.int16)

        results["png16_write"] = n / timed(write_png, args.repeats)
        results["png16_read_random"] = n / timed(lambda: [read_png(i) for i in order], args.repeats)
        results[f"png16_read_loader_{args.workers}_workers"] = n / timed(
            lambda: loader_pass(read_png, n, args.workers), args.repeats)
        assert np.array_equal(read_png(5), store[5]) and np.array_equal(store[5], data[5])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    machine = common.machine("cpu")
    report = {"machine": machine, "slices": n, "size": size, "repeats": args.repeats,
              "torch": torch.__version__, "slices_per_s": {k: round(v, 1) for k, v in results.items()}}
    lines = [f"# Slice store I/O on {machine} ({n} slices of {size}x{size} int16, median of "
             f"{args.repeats})", "", "| what | slices/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in results.items()]
    ratio = results[f"store_read_loader_{args.workers}_workers"] / results[f"png16_read_loader_{args.workers}_workers"]
    lines += ["", f"store vs 16-bit PNG per slice, DataLoader reads: {ratio:.1f}x"]
    common.write(args.out, f"store_io-{machine}", report, lines)


if __name__ == "__main__":
    main()
