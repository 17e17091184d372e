"""Ingestion throughput: our command vs a faithful re-creation of the study's original script,
on the same synthetic DICOM tree, same machine, same run.

    python -m benchmarks.ingest [--series 20] [--slices 100] [--repeats 3] [--workers 2]

The tree is laid out like LIDC-IDRI (PATIENT/study/series/*.dcm plus an XML file per series),
512x512 int16 CT slices (phantom anatomy with fresh scanner noise per slice). The original
approach: pick folders with more than 10 files, sort files by name, pydicom read, HU via
slope/intercept, per-slice min-max to 8 bit, one PNG per slice, one process.
Each figure is the median of --repeats timed runs after the tree is in the page cache.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from scipy import ndimage

from benchmarks import common
from medssl.data import SliceStore
from medssl.data.ingest import Options, ingest
from medssl.data.phantom import phantom_volume
from medssl.data.synthetic_dicom import write_series


def make_tree(root: Path, series: int, slices: int, size: int = 512) -> int:
    rng = np.random.default_rng(0)
    for k in range(series):
        base, _, _ = phantom_volume(0, k, 8, size // 2)
        base = ndimage.zoom(base.astype(np.float32), (slices / 8, 2, 2), order=1)
        vol = np.clip(base + rng.normal(0, 12, base.shape), -1024, 3071).astype(np.int16)
        folder = root / f"LIDC-IDRI-{k:04d}" / "1.3.6.1.study" / f"1.3.6.1.series.{k}"
        write_series(folder, vol, series_uid=f"1.3.6.1.4.1.9328.{k}", patient_id=f"LIDC-IDRI-{k:04d}",
                     names="uid", spacing=0.7, thickness=1.25)
        (folder / "069.xml").write_text("<LidcReadMessage/>")
    return series * slices


def original_approach(root: Path, out: Path) -> int:
    """The study's preprocessing, re-created: 8-bit PNG per slice, per-slice min-max."""
    count = 0
    for folder, _, names in sorted(os.walk(root)):
        dcm = sorted(n for n in names if n.endswith(".dcm"))
        if len(dcm) <= 10:  # "CT series = folder with more than 10 files"
            continue
        target = out / Path(folder).relative_to(root)
        target.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(dcm):  # sorted by file name, not position
            ds = pydicom.dcmread(Path(folder) / name)
            hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            scaled = (hu - hu.min()) / max(hu.max() - hu.min(), 1e-6) * 255
            Image.fromarray(scaled.astype(np.uint8)).save(target / f"{i:04d}.png")
            count += 1
    return count


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(*, series: int, slices: int, repeats: int, workers: int) -> dict:
    """Slices/s of the original approach and of ours (to 256 px and kept at 512 px), each the
    median of ``repeats`` runs on one synthetic tree of ``series`` x ``slices`` 512x512 slices."""
    work = Path(tempfile.mkdtemp(prefix="medssl-ingest-bench-"))
    try:
        n = make_tree(work / "LIDC-IDRI", series, slices)
        for path in (work / "LIDC-IDRI").rglob("*.dcm"):  # page cache warm-up
            path.read_bytes()

        def run_original():
            shutil.rmtree(work / "png", ignore_errors=True)
            return original_approach(work / "LIDC-IDRI", work / "png")

        def run_ours(size):
            def go():
                summary, _, _ = ingest([work / "LIDC-IDRI"], work / f"store{size}",
                                       Options(size=size), workers=workers, overwrite=True,
                                       progress=False)
                return summary.slices_written
            return go

        results = {}
        t, count = timed(run_original, repeats)
        assert count == n
        results["original_png8_single_process"] = n / t
        for size in (256, 512):
            t, count = timed(run_ours(size), repeats)
            assert count == n
            results[f"medssl_int16_size{size}_{workers}_workers"] = n / t
        store = SliceStore(work / "store512")
        assert store.units == "HU" and store[0].dtype == np.int16
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"slices": n, "series": series, "repeats": repeats, "workers": workers,
            "slices_per_s": {k: round(v, 1) for k, v in results.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--slices", type=int, default=100, help="slices per series")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=common.RESULTS)
    args = ap.parse_args()

    report = measure(series=args.series, slices=args.slices, repeats=args.repeats, workers=args.workers)
    results = report["slices_per_s"]
    machine = common.machine("cpu")
    base = results["original_png8_single_process"]
    lines = [f"# Ingestion on {machine}: {report['slices']} DICOM slices of 512x512 ({args.series} series), "
             f"median of {args.repeats}", "", "| pipeline | slices/s | vs original |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:,.0f} | {v / base:.1f}x |" for k, v in results.items()]
    common.write(args.out, f"ingest-{machine}", {"machine": machine, **report}, lines)


if __name__ == "__main__":
    main()
