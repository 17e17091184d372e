"""The views of ``views.py``, made for a whole batch at once on the training device (GPU).

Same ViewSpec, same steps in the same order, a fresh draw per image: rotation (kornia), random
resized crop (kornia's crop sampler, the crop centred if the spec says so; torchvision's
``roi_align`` to crop and resize every image in one kernel, averaging over each output pixel's
footprint when shrinking, like antialiasing), flips, brightness/contrast in a random order
(kornia), Gaussian blur (kornia), Gaussian noise, normalisation. Random numbers are drawn on the
host (a few per image) and sent with ``non_blocking`` copies, so nothing here waits for the
device. Two differences: crops are resampled bilinearly even when a spec asks for bicubic, and a
crop shrunk 1.4 to 2 times comes out about 6 % sharper (mean difference of neighbouring pixels)
than torchvision's antialiased resize makes it (box average against its wider triangle filter).
"""
from __future__ import annotations

import math

import torch
from kornia.augmentation.random_generator import ResizedCropGenerator
from kornia.enhance import adjust_brightness_accumulative, adjust_contrast_with_mean_subtraction
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import rotate
from torchvision.ops import roi_align

from .views import ViewSpec, blur_kernel_size, blur_sigma_px

ASPECT_RATIOS = (3 / 4, 4 / 3)  # torchvision's RandomResizedCrop default


def draw(low: float, high: float, n: int) -> torch.Tensor:
    return torch.empty(n).uniform_(low, high)


def chance(p: float, n: int) -> torch.Tensor:
    return torch.rand(n) < p


def per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) host values -> (B, 1, 1, 1) on ``like``'s device, copied without waiting."""
    return values.view(-1, 1, 1, 1).to(like.device, like.dtype, non_blocking=True)


def choose(condition: torch.Tensor, if_true: torch.Tensor, otherwise: torch.Tensor) -> torch.Tensor:
    return torch.where(per_image(condition, if_true).bool(), if_true, otherwise)


class BatchView(torch.nn.Module):
    """One view kind: (B, 1, H, W) intensities in [0, 1] -> (B, channels, size, size)."""

    def __init__(self, spec: ViewSpec | dict):
        super().__init__()
        self.spec = ViewSpec.of(spec)
        self.crops = ResizedCropGenerator((self.spec.size,) * 2, tuple(self.spec.scale), ASPECT_RATIOS)
        self.crops.set_rng_device_and_dtype(torch.device("cpu"), torch.float32)

    def forward(self, images: torch.Tensor, noise: torch.Generator | None = None) -> torch.Tensor:
        """``noise``: the device generator for the additive noise (default: the global one)."""
        s, n = self.spec, len(images)
        x = images
        if s.rotate_p > 0:
            angle = draw(-s.rotate_degrees, s.rotate_degrees, n) * chance(s.rotate_p, n)
            x = rotate(x, angle.to(x.device, x.dtype, non_blocking=True), mode="bilinear",
                       align_corners=False)
        x = self.resized_crop(x)
        if s.hflip_p > 0:
            x = choose(chance(s.hflip_p, n), x.flip(-1), x)
        if s.vflip_p > 0:
            x = choose(chance(s.vflip_p, n), x.flip(-2), x)
        if s.jitter_p > 0:
            x = choose(chance(s.jitter_p, n), self.jitter(x), x)
        if s.blur_p > 0:
            kernel = blur_kernel_size(s)
            sigma = draw(*blur_sigma_px(s), n)[:, None].expand(n, 2)
            x = choose(chance(s.blur_p, n), gaussian_blur2d(x, (kernel, kernel), sigma), x)
        if s.noise_p > 0:
            low, high = (math.log(v) for v in s.noise_var)
            scale = draw(low, high, n).exp().sqrt() * chance(s.noise_p, n)
            x = x + torch.randn(x.shape, generator=noise, device=x.device, dtype=x.dtype) * per_image(scale, x)
        x = (x - s.mean[0]) / s.std[0]
        return x.expand(-1, s.channels, -1, -1).contiguous() if s.channels != 1 else x

    def resized_crop(self, x: torch.Tensor) -> torch.Tensor:
        corners = self.crops(x.shape)["src"]  # (B, 4, 2) pixel corners, x then y
        start, end = corners[:, 0], corners[:, 2] + 1
        if self.spec.crop_position == "centre":  # the same size, centred as views.CentredResizedCrop
            extent = end - start
            start = torch.div(torch.tensor([x.shape[-1], x.shape[-2]]) - extent, 2, rounding_mode="floor")
            end = start + extent
        boxes = torch.cat([torch.arange(len(x), dtype=torch.float32)[:, None], start, end], dim=1)
        boxes = boxes.to(x.device, x.dtype, non_blocking=True)
        return roi_align(x, boxes, (self.spec.size,) * 2, spatial_scale=1.0, sampling_ratio=-1,
                         aligned=True)

    def jitter(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's ColorJitter on grey: brightness and contrast factors, in a random order."""
        s, n = self.spec, len(x)
        bright = draw(max(0.0, 1 - s.brightness), 1 + s.brightness, n)  # kornia copies them over
        contrast = draw(max(0.0, 1 - s.contrast), 1 + s.contrast, n)
        brightness_first = adjust_contrast_with_mean_subtraction(adjust_brightness_accumulative(x, bright), contrast)
        contrast_first = adjust_brightness_accumulative(adjust_contrast_with_mean_subtraction(x, contrast), bright)
        return choose(chance(0.5, n), brightness_first, contrast_first)


class BatchMultiView(torch.nn.Module):
    """All views of a batch: ``count`` draws of each spec, in spec order (as MultiView).

    ``intensity``: a ``HUToIntensity`` applied first (stored values in, views out).
    ``forward(images, seed)``: with a seed, every random draw of this batch comes from streams
    of its own seeded with it (the global one is left as it was): the data module passes one
    per (run seed, rank, epoch, batch), so that each DDP process augments its images
    differently, and a resumed run makes the same views as the uninterrupted one.
    """

    def __init__(self, specs, intensity=None):
        super().__init__()
        self.views = torch.nn.ModuleList([BatchView(s) for s in specs])
        self.intensity = intensity
        self.noise: torch.Generator | None = None

    def forward(self, images: torch.Tensor, seed: int | None = None) -> list[torch.Tensor]:
        if seed is None:
            return self.all_views(images, None)
        if self.noise is None or self.noise.device != images.device:
            self.noise = torch.Generator(images.device)
        self.noise.manual_seed(seed)  # host-side: no wait on the device
        with torch.random.fork_rng(devices=[]):  # the CPU stream, restored after
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that seeds CUDA's too
            return self.all_views(images, self.noise)

    def all_views(self, images: torch.Tensor, noise: torch.Generator | None) -> list[torch.Tensor]:
        if self.intensity is not None:
            images = self.intensity.batch(images)
        return [view(images, noise) for view in self.views for _ in range(view.spec.count)]
