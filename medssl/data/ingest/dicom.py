"""DICOM: read headers, group files into series by SeriesInstanceUID, order slices along the
slice normal, and convert pixels to Hounsfield units with pydicom's modality LUT."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality", "Rows",
               "Columns", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
               "PixelSpacing", "NumberOfFrames", "SamplesPerPixel", "SOPInstanceUID"]
AIR_HU = -1024


class SkipItem(Exception):
    """An input that cannot be ingested; the message is the reason for the errors report."""

    def __init__(self, reason: str, file: str | None = None):
        super().__init__(reason)
        self.file = file


def _read(path: Path, **kwargs) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        return pydicom.dcmread(path, force=True, **kwargs)  # DICOM without a file preamble


def read_header(path: Path) -> dict:
    """The header fields ingestion needs, or SkipItem with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as err:  # pydicom raises many kinds on damaged files
        raise SkipItem(f"unreadable DICOM: {type(err).__name__}: {err}") from err
    uid = ds.get("SeriesInstanceUID")
    if not uid:
        raise SkipItem("not a DICOM image (no SeriesInstanceUID)")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    return {
        "file": str(path),
        "series_uid": str(uid),
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "modality": str(ds.get("Modality", "")).upper(),
        "rows": int(rows) if rows else 0,
        "cols": int(cols) if cols else 0,
        "frames": int(ds.get("NumberOfFrames") or 1),
        "samples": int(ds.get("SamplesPerPixel") or 1),
        "position": [float(v) for v in position] if position and len(position) == 3 else None,
        "orientation": [float(v) for v in orientation] if orientation and len(orientation) == 6 else None,
        "instance": int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        "spacing": [float(v) for v in spacing] if spacing and len(spacing) == 2 else [np.nan, np.nan],
    }


@dataclass
class SeriesPlan:
    """One DICOM series to ingest: its files in slice order, and what is known of it."""

    uid: str
    files: list[str]
    positions: list[float]
    headers: list[dict]

    @property
    def first(self) -> dict:
        return self.headers[0]


def order_series(headers: list[dict]) -> SeriesPlan:
    """Sort one series' slices by position along the slice normal (InstanceNumber as fallback).

    Raises SkipItem for mixed sizes, duplicate positions or missing slices (gaps).
    """
    uid = headers[0]["series_uid"]
    sizes = {(h["rows"], h["cols"]) for h in headers}
    if len(sizes) > 1:
        raise SkipItem(f"series has slices of mixed sizes {sorted(sizes)}")
    if any(h["frames"] > 1 for h in headers):
        if len(headers) > 1:
            raise SkipItem("series mixes several multi-frame files")
        return SeriesPlan(uid, [headers[0]["file"]], [np.nan] * headers[0]["frames"], headers)
    orientation = headers[0]["orientation"]
    if orientation and all(h["position"] for h in headers):
        normal = np.cross(orientation[:3], orientation[3:])
        positions = [float(np.dot(h["position"], normal)) for h in headers]
        order = np.argsort(positions, kind="stable")
        positions = [positions[i] for i in order]
        _check_spacing(positions)
    elif all(h["instance"] is not None for h in headers):
        order = np.argsort([h["instance"] for h in headers], kind="stable")
        positions = [np.nan] * len(headers)
    else:
        order = np.argsort([h["file"] for h in headers], kind="stable")
        positions = [np.nan] * len(headers)
    ordered = [headers[i] for i in order]
    return SeriesPlan(uid, [h["file"] for h in ordered], positions, ordered)


def _check_spacing(positions: list[float]) -> None:
    if len(positions) < 2:
        return
    steps = np.diff(positions)
    step = float(np.median(steps))
    if np.any(steps < 1e-3 * max(abs(step), 1e-3)):
        i = int(np.argmin(steps))
        raise SkipItem(f"duplicate slice position {positions[i]:.2f} mm")
    big = np.nonzero(steps > 1.5 * step)[0]
    if len(big):
        i = int(big[0])
        raise SkipItem(f"missing slices: gap of {steps[i]:.2f} mm after position "
                       f"{positions[i]:.2f} mm (slice spacing {step:.2f} mm)")


def _canonical_flips(orientation) -> tuple[bool, bool]:
    """Flips that bring an axis-aligned axial slice to the usual display (rows along +x, the
    patient's left; columns along +y, posterior)."""
    if not orientation:
        return False, False
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if abs(abs(row[0]) - 1) < 1e-3 and abs(abs(col[1]) - 1) < 1e-3:
        return col[1] < 0, row[0] < 0  # (flip rows, flip columns)
    return False, False


def read_pixels(path: str, modality: str, orientation=None) -> np.ndarray:
    """Pixel values of one file as float (frames, rows, cols): HU for CT via the modality LUT,
    padding set to air (CT) or the minimum (other modalities)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _read(Path(path))
            stored = ds.pixel_array
    except Exception as err:
        raise SkipItem(f"cannot decode pixel data: {type(err).__name__}: {err}") from err
    if ds.get("SamplesPerPixel", 1) != 1:
        raise SkipItem(f"colour image ({ds.SamplesPerPixel} samples per pixel), not a grey scan")
    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        limit = ds.get("PixelPaddingRangeLimit", padding)
        low, high = sorted((padding, limit))
        pad = (stored >= low) & (stored <= high)
        if pad.any():
            values[pad] = AIR_HU if modality == "CT" else values[~pad].min(initial=0)
    if values.ndim == 2:
        values = values[None]
    flip_rows, flip_cols = _canonical_flips(orientation)
    if flip_rows:
        values = values[:, ::-1]
    if flip_cols:
        values = values[:, :, ::-1]
    return values


def read_series(plan: SeriesPlan) -> np.ndarray:
    """All slices of a series as float32 (n, rows, cols), in plan order."""
    modality = plan.first["modality"]
    parts = []
    for file, header in zip(plan.files, plan.headers):
        try:
            parts.append(read_pixels(file, modality, header["orientation"]))
        except SkipItem as err:
            raise SkipItem(f"{err}; series {plan.uid} skipped (a slice would be missing)", file) from err
    return np.concatenate(parts).astype(np.float32, copy=False)
