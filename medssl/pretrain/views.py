"""Augmented views for self-supervised methods, on float tensors (no 8-bit round trip).

A view is described by a plain dict (so configs stay YAML and checkpoints stay plain), e.g.
``{"size": 224, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, ...}``; see ViewSpec.
Input: a (1, H, W) tensor of intensities in [0, 1]. Output per view: (channels, size, size),
normalised, grey replicated to ``channels`` (3 by default, for ImageNet-shaped backbones).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from kornia.filters import gaussian_blur2d
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from ..data.input_mapping import VIEW_MEAN, VIEW_SIZE, VIEW_STD

CROP_POSITIONS = ("random", "centre")


@dataclass
class ViewSpec:
    """One kind of view of a slice: an item of ``data.views`` in a pre-training config.

    The steps run in this order: rotation, random resized crop, flips, brightness/contrast
    jitter, blur, noise, normalisation, grey replicated to ``channels``. A step whose
    probability is 0 is left out.

    Args:
        size: side of the square view in pixels.
        count: how many views of this kind each image gives (consecutive in the batch).
        scale: area range of the random resized crop, as fractions of the slice.
        crop_position: where the crop lies: ``random`` (anywhere in the slice, as torchvision's
            RandomResizedCrop) or ``centre`` (centred on the slice: only its size and aspect are
            drawn, so a view keeps where in the body its anatomy sits).
        interpolation: resampling of the crop: ``bilinear`` or ``bicubic`` (SparK).
        rotate_p: probability of a random rotation up to +-``rotate_degrees``.
        rotate_degrees: largest rotation angle.
        hflip_p: probability of a horizontal flip.
        vflip_p: probability of a vertical flip.
        jitter_p: probability of a brightness/contrast jitter (saturation and hue do nothing
            on grey).
        brightness: brightness jitter strength (torchvision's ``ColorJitter``).
        contrast: contrast jitter strength.
        blur_p: probability of a Gaussian blur (kernel about a tenth of ``size``).
        blur_sigma: range of the blur's sigma in pixels OF A 224 PX VIEW, drawn uniformly; a view
            of another size gets it scaled by ``size / 224`` (``blur_sigma_px``), so that a blur
            erases the same share of the anatomy at every size (2 px on 224 px is 0.6 px on 64 px).
        noise_p: probability of additive Gaussian noise.
        noise_var: range of the noise's variance, drawn log-uniformly.
        mean: normalisation mean (the first value is used: the input is grey).
        std: normalisation standard deviation (the first value is used).
        channels: channels of the view (3 for ImageNet-shaped backbones).
    """

    size: int = VIEW_SIZE
    count: int = 2
    scale: tuple[float, float] = (0.2, 1.0)
    crop_position: str = "random"
    interpolation: str = "bilinear"
    rotate_p: float = 0.0
    rotate_degrees: float = 180.0
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    jitter_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_p: float = 0.0
    noise_var: tuple[float, float] = (1e-5, 1e-4)
    mean: list[float] = field(default_factory=lambda: [VIEW_MEAN])
    std: list[float] = field(default_factory=lambda: [VIEW_STD])
    channels: int = 3

    def __post_init__(self):
        if self.crop_position not in CROP_POSITIONS:
            raise ValueError(f"crop_position {self.crop_position!r}: one of {', '.join(CROP_POSITIONS)}")

    @classmethod
    def of(cls, spec: "ViewSpec | dict") -> "ViewSpec":
        return spec if isinstance(spec, ViewSpec) else cls(**spec)

    def as_dict(self) -> dict:
        return asdict(self)


class RandomGaussianNoise(torch.nn.Module):
    """Add N(0, var) noise with var drawn log-uniformly from ``var_range``."""

    def __init__(self, var_range=(1e-5, 1e-4)):
        super().__init__()
        self.log_low, self.log_high = (math.log(v) for v in var_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = math.exp(float(torch.empty(()).uniform_(self.log_low, self.log_high)))
        return x + torch.randn_like(x) * math.sqrt(var)


class RandomGaussianBlur(torch.nn.Module):
    """Gaussian blur, sigma uniform in ``sigma_range``: kornia's separable filter (torchvision's
    convolves with the full 2-D kernel, about ten times slower at SSL kernel sizes)."""

    def __init__(self, kernel_size: int, sigma_range=(0.1, 2.0)):
        super().__init__()
        self.kernel_size, self.sigma_range = kernel_size, tuple(sigma_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.empty(1, 1).uniform_(*self.sigma_range).expand(1, 2)
        k = self.kernel_size
        return gaussian_blur2d(x[None], (k, k), sigma)[0]


class CentredResizedCrop(T.RandomResizedCrop):
    """torchvision's RandomResizedCrop with the crop centred on the image: size and aspect drawn
    as there, the position not."""

    def make_params(self, flat_inputs: list) -> dict:
        params = super().make_params(flat_inputs)
        height, width = T.functional.get_size(flat_inputs[0])
        return {**params, "top": (height - params["height"]) // 2, "left": (width - params["width"]) // 2}


class GreyToChannels(torch.nn.Module):
    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self.channels, *x.shape[1:]).contiguous() if self.channels != 1 else x


BLUR_REFERENCE_SIZE = 224  # the view side ``blur_sigma`` is given for


def blur_sigma_px(spec: ViewSpec) -> tuple[float, float]:
    """The blur's sigma range in pixels of this view (``blur_sigma`` scaled to its size)."""
    scale = spec.size / BLUR_REFERENCE_SIZE
    return (spec.blur_sigma[0] * scale, spec.blur_sigma[1] * scale)


def blur_kernel_size(spec: ViewSpec) -> int:
    """Odd, about a tenth of the view's side (as SimCLR / SwAV)."""
    return max(3, int(0.1 * spec.size) // 2 * 2 + 1)


def build_view(spec: ViewSpec) -> T.Compose:
    """One view's pipeline, in the study's order: geometry, intensity, noise, normalise."""
    steps = []
    if spec.rotate_p > 0:
        rotation = T.RandomRotation(spec.rotate_degrees, interpolation=InterpolationMode.BILINEAR)
        steps.append(T.RandomApply([rotation], p=spec.rotate_p))
    crop = CentredResizedCrop if spec.crop_position == "centre" else T.RandomResizedCrop
    steps.append(crop(spec.size, scale=tuple(spec.scale), antialias=True,
                                     interpolation=InterpolationMode(spec.interpolation)))
    if spec.hflip_p > 0:
        steps.append(T.RandomHorizontalFlip(spec.hflip_p))
    if spec.vflip_p > 0:
        steps.append(T.RandomVerticalFlip(spec.vflip_p))
    if spec.jitter_p > 0:
        steps.append(T.RandomApply([T.ColorJitter(spec.brightness, spec.contrast)], p=spec.jitter_p))
    if spec.blur_p > 0:
        kernel = blur_kernel_size(spec)
        steps.append(T.RandomApply([RandomGaussianBlur(kernel, blur_sigma_px(spec))], p=spec.blur_p))
    if spec.noise_p > 0:
        steps.append(T.RandomApply([RandomGaussianNoise(tuple(spec.noise_var))], p=spec.noise_p))
    steps.append(T.Normalize(spec.mean[:1], spec.std[:1]))
    steps.append(GreyToChannels(spec.channels))
    return T.Compose(steps)


class MultiView:
    """All views of one image: ``count`` draws of each spec, in spec order."""

    def __init__(self, specs):
        self.specs = [ViewSpec.of(s) for s in specs]
        self.pipelines = [(build_view(s), s.count) for s in self.specs]

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [pipe(image) for pipe, count in self.pipelines for _ in range(count)]
