"""What a backbone was fed in pre-training, so that fine-tuning feeds it the same: the mapping of
stored values to [0, 1] (``HUToIntensity`` keyword arguments), the values it was applied to (HU or
raw), the normalisation ``mean`` / ``std``, and the view size.

Exported backbones record it (``"input"``, see ``medssl.checkpoints.export``); the loader reads it
back, and the downstream data module uses it unless told otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

from .intensity import WINDOWS, HUToIntensity

# CT in the full range (-1024..3071 HU -> 0..1): the project's constants, used for a backbone that
# records nothing (random initialisation, foreign files).
CT_FULL_MEAN, CT_FULL_STD = 0.1806, 0.1907
# a pre-training view's side and normalisation where its config leaves them out (``ViewSpec``'s defaults)
VIEW_SIZE, VIEW_MEAN, VIEW_STD = 224, 0.5, 0.25
INTENSITY_MODES = ("full", "window", "random_window", "range")
UNITS = ("HU", "raw")


class InputMappingError(ValueError):
    """A recorded or requested input mapping that cannot be used; the message says why."""


@dataclass(frozen=True)
class InputMapping:
    """``intensity``: ``HUToIntensity`` keyword arguments; ``units``: what it was applied to in
    pre-training (``HU``, or ``raw`` for stores built from image folders or MR); ``mean`` / ``std``:
    the normalisation after it; ``size``: the side of the pre-training views (None: unknown)."""

    intensity: dict = field(default_factory=lambda: {"mode": "full"})
    mean: float = CT_FULL_MEAN
    std: float = CT_FULL_STD
    size: int | None = None
    units: str = "HU"

    def __post_init__(self):
        mode = self.intensity.get("mode", "full")
        if mode not in INTENSITY_MODES:
            raise InputMappingError(f"intensity mode {mode!r} is not one of {INTENSITY_MODES}")
        try:
            HUToIntensity(**self.intensity)
        except TypeError as err:
            raise InputMappingError(f"intensity {self.intensity}: {err}") from err
        if self.units not in UNITS:
            raise InputMappingError(f"units {self.units!r} is not one of {UNITS}")
        if not self.std > 0:
            raise InputMappingError(f"std must be positive, not {self.std}")

    @classmethod
    def from_dict(cls, values: Mapping) -> "InputMapping":
        """The mapping a dict (as ``as_dict`` writes it) describes; InputMappingError if it cannot."""
        if not isinstance(values, Mapping):
            raise InputMappingError(f"expected a dict, not {type(values).__name__}")
        unknown = sorted(set(values) - {"intensity", "mean", "std", "size", "units"})
        if unknown:
            raise InputMappingError(f"unknown field(s) {unknown}")
        try:
            return cls(intensity=dict(values.get("intensity") or {"mode": "full"}),
                       mean=float(values.get("mean", CT_FULL_MEAN)), std=float(values.get("std", CT_FULL_STD)),
                       size=None if values.get("size") is None else int(values["size"]),
                       units=str(values.get("units", "HU")))
        except (TypeError, ValueError) as err:
            raise InputMappingError(str(err)) from err

    @classmethod
    def of_pretraining(cls, intensity: Mapping | None, view: Mapping | None,
                       units: str | None = None) -> "InputMapping":
        """From a pre-training data config's ``intensity`` and its first view (an item of
        ``data.views``: its ``size``, ``mean`` and ``std``, defaults for what it leaves out);
        ``units``: the store's (None: ``raw`` for mode ``range``, else ``HU``, as the pre-training
        data module demands)."""
        intensity = dict(intensity or {"mode": "full"})
        units = units or ("raw" if intensity.get("mode") == "range" else "HU")
        view = dict(view or {})

        def first(value):  # the input is grey: the first value of a per-channel list
            return float(value[0] if isinstance(value, (list, tuple)) else value)

        return cls(intensity, first(view.get("mean", VIEW_MEAN)), first(view.get("std", VIEW_STD)),
                   int(view.get("size", VIEW_SIZE)), units)

    def as_dict(self) -> dict:
        return asdict(self)

    def replaced(self, intensity: Mapping | None = None, mean: float | None = None,
                 std: float | None = None) -> "InputMapping":
        """This mapping with the values given (None: keep). A new ``intensity`` of mode ``range``
        applies to raw values, any other to HU."""
        if intensity is not None:
            intensity = dict(intensity)
            units = "raw" if intensity.get("mode") == "range" else "HU"
        return InputMapping(self.intensity if intensity is None else intensity,
                            self.mean if mean is None else float(mean), self.std if std is None else float(std),
                            self.size, self.units if intensity is None else units)

    def hu_intensity(self) -> HUToIntensity:
        """The mapping for DICOM values, fixed: ``random_window`` (an augmentation) becomes the
        window in the middle of its ranges."""
        mapping = HUToIntensity(**self.intensity)
        if mapping.mode == "random_window":
            return HUToIntensity("window", level=sum(mapping.level_range) / 2, width=sum(mapping.width_range) / 2)
        return mapping

    def raw_intensity(self) -> HUToIntensity | None:
        """The mapping for the raw values of 16-bit pictures: the recorded one if the backbone was
        pre-trained on raw values, else None (full bit depth)."""
        return self.hu_intensity() if self.units == "raw" else None

    def describe(self) -> str:
        """One line: what each kind of input goes through."""
        hu = self.hu_intensity()
        low, high = hu.level - hu.width / 2, hu.level + hu.width / 2
        named = {v: k for k, v in WINDOWS.items()}.get((hu.level, hu.width))
        span = f"{low:g}..{high:g}" + (f" ({named} window)" if named else "")
        raw = self.raw_intensity()
        pictures16 = (f"16-bit pictures: raw values {span} -> 0..1 (pre-trained on raw values)" if raw else
                      "16-bit pictures: /65535, full bit depth (pre-trained on HU, not on raw values)")
        dicom = f"DICOM: {span} {'HU' if self.units == 'HU' else 'values'} -> 0..1"
        if self.intensity.get("mode") == "random_window":
            dicom += " (the middle of the pre-training's random windows)"
        size = f"; pre-trained at {self.size} px" if self.size else ""
        return (f"{dicom}; {pictures16}; 8-bit pictures and arrays: /255; then mean {self.mean:g}, "
                f"std {self.std:g}{size}")


DEFAULT = InputMapping()

# The study's released checkpoints record nothing: the constants of its configs (docs/protocol.md),
# with the one intensity mapping medssl uses for every slice (the study min-max scaled each slice).
_STUDY_CONTRASTIVE = InputMapping({"mode": "full"}, CT_FULL_MEAN, CT_FULL_STD, 224)
STUDY_INPUTS = {"swav": _STUDY_CONTRASTIVE, "mocov2": _STUDY_CONTRASTIVE, "byol": _STUDY_CONTRASTIVE,
                "spark": InputMapping({"mode": "full"}, 0.485, 0.229, 224)}

# ImageNet weights (torchvision's, timm's) were trained on RGB normalised with ImageNet's channel
# means (0.485, 0.456, 0.406) and stds (0.229, 0.224, 0.225). A grey image goes in as three equal
# channels, which conv1 sees as one channel through its weights summed over RGB (what timm's
# adapt_input_conv does for in_chans=1); one mean and std for all three: the averages of
# ImageNet's (against each channel's own: scale within 2 %, shift at most 0.2 std for values in 0..1).
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226
IMAGENET_INPUT = InputMapping({"mode": "full"}, IMAGENET_GREY_MEAN, IMAGENET_GREY_STD, 224)
