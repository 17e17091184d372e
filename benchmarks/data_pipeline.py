"""Input pipeline: augmented views/s from the slice store vs one PNG per slice read with PIL.

    python -m benchmarks.data_pipeline [--slices 512] [--slice-size 256] [--size 224] [--workers 2]

Same slices, same view spec (the study's MoCo v2 / BYOL views), same DataLoader settings and
worker count, same run. Three pipelines:
  - store:     memory-mapped slice store -> our per-image views (``medssl.pretrain.views``);
  - png_study: 16-bit PNG per slice via PIL -> the same steps built from torchvision's stock
               transforms (its GaussianBlur convolves with the full 2-D kernel), as the study did;
  - png_ours:  16-bit PNG per slice -> our views (what reading PNGs alone costs).
On CUDA also ``store_device``: int16 slices to the GPU, views made there for the whole batch.
Each figure is the median over --repeats epochs after one warm-up epoch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from medssl.data.intensity import HUToIntensity
from medssl.data.phantom import write_phantom_store
from medssl.data.store import SliceStore
from medssl.pretrain.batch_views import BatchMultiView
from medssl.pretrain.datamodule import SliceValues, SliceViews
from medssl.pretrain.methods import method
from medssl.pretrain.views import MultiView, ViewSpec, blur_kernel_size, blur_sigma_px


def study_views(specs: list[dict]) -> MultiView:
    """Our view steps with torchvision's own GaussianBlur in place of the separable one."""
    views = MultiView(specs)
    for (pipeline, _), spec in zip(views.pipelines, views.specs):
        for step in pipeline.transforms:
            if isinstance(step, T.RandomApply) and type(step.transforms[0]).__name__ == "RandomGaussianBlur":
                step.transforms[0] = T.GaussianBlur(blur_kernel_size(spec), blur_sigma_px(spec))
    return views


class PngViews(Dataset):
    def __init__(self, paths: list[Path], intensity: HUToIntensity, views: MultiView):
        self.paths, self.intensity, self.views = paths, intensity, views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        hu = np.asarray(Image.open(self.paths[index]), dtype=np.int32) - 1024
        return self.views(self.intensity(torch.from_numpy(hu.astype(np.float32))[None]))


def write_pngs(store: SliceStore, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(store)):
        paths.append(folder / f"{i:06d}.png")
        Image.fromarray((store[i].astype(np.int32) + 1024).astype(np.uint16)).save(paths[-1])
    return paths


def views_per_second(dataset: Dataset, *, batch_size: int, workers: int, repeats: int,
                     views_per_image: int, on_device=None) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0,
                        prefetch_factor=4 if workers else None, pin_memory=torch.cuda.is_available())
    rates = []
    for epoch in range(repeats + 1):  # the first epoch starts the workers: not timed
        start, images = time.perf_counter(), 0
        for batch in loader:
            if on_device is not None:
                batch = on_device(batch.cuda(non_blocking=True))
            images += len(batch[0])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if epoch:
            rates.append(images * views_per_image / (time.perf_counter() - start))
    return statistics.median(rates)


def mocov2_views(size: int) -> list[dict]:
    """The study's MoCo v2 views (its full config's, from the registry) at ``size``."""
    return [{**v, "size": size} for v in method("mocov2").data_config()["views"]]


def measure(*, slices: int, size: int, workers: int, repeats: int, batch_size: int,
            views: list[dict], slice_size: int = 256) -> dict:
    """Views/s of each pipeline; ``ratio`` = store / png_study (goal >= 3)."""
    count = sum(ViewSpec.of(v).count for v in views)
    intensity = HUToIntensity(mode="full")
    with tempfile.TemporaryDirectory(prefix="medssl-pipeline-") as tmp:
        store = write_phantom_store(Path(tmp) / "store", patients=max(1, slices // 32),
                                    slices_per_patient=min(32, slices), size=slice_size, seed=0,
                                    progress=False)
        store = SliceStore(store.path)
        paths = write_pngs(store, Path(tmp) / "png")
        common = dict(batch_size=batch_size, workers=workers, repeats=repeats, views_per_image=count)
        result = {
            "slices": len(store), "slice_size": slice_size, "view_size": size, "views_per_image": count,
            "workers": workers, "batch_size": batch_size,
            "store_views_per_s": views_per_second(SliceViews(store, intensity, MultiView(views)), **common),
            "png_views_per_s": views_per_second(PngViews(paths, intensity, study_views(views)), **common),
            "png_ours_views_per_s": views_per_second(PngViews(paths, intensity, MultiView(views)), **common),
        }
        if torch.cuda.is_available():
            result["device_views_per_s"] = views_per_second(
                SliceValues(store), **common, on_device=BatchMultiView(views, intensity=intensity))
    result["ratio"] = result["store_views_per_s"] / result["png_views_per_s"]
    result["goal"] = 3.0
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=512)
    ap.add_argument("--slice-size", type=int, default=256)
    ap.add_argument("--size", type=int, default=224, help="view size")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    result = measure(slices=args.slices, size=args.size, workers=args.workers, repeats=args.repeats,
                     batch_size=args.batch, views=mocov2_views(args.size), slice_size=args.slice_size)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
