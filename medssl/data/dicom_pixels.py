"""One DICOM file: read it (with or without the file preamble), its enhanced multi-frame
functional groups, and its pixel values in the modality's units (Hounsfield units for CT) via
pydicom's modality LUT. A file that cannot be used is an UnreadableInput naming the problem."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom
from pydicom.pixels import apply_modality_lut, get_decoder

from .errors import UnreadableInput

AIR_HU = -1024
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}


def looks_like_dicom(path: Path) -> bool:
    """A DICOM suffix, or the 'DICM' preamble (pydicom's check); False for an unreadable file."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        return is_dicom(path)
    except OSError:
        return False


def one_line(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def read_dataset(path: Path, **kwargs) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, **kwargs)
        except InvalidDicomError:
            return pydicom.dcmread(path, force=True, **kwargs)  # DICOM without a file preamble


def frame_groups(ds, frames: int) -> list[dict] | None:
    """Functional group macros of each frame of an enhanced multi-frame file (per-frame items
    over shared ones): [{macro keyword: its first item}], or None without functional groups."""
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared_seq and not per_frame:
        return None
    if per_frame and len(per_frame) != frames:
        raise UnreadableInput(None, f"bad header: PerFrameFunctionalGroupsSequence has "
                                    f"{len(per_frame)} items for {frames} frames")
    shared = _macros(shared_seq[0]) if shared_seq else {}
    return [{**shared, **(_macros(per_frame[k]) if per_frame else {})} for k in range(frames)]


def _macros(item) -> dict:
    return {e.keyword: e.value[0] for e in item if e.VR == "SQ" and e.value}


def _canonical_flips(orientation) -> tuple[bool, bool]:
    """Flips that bring an axis-aligned axial slice to the usual display (rows along +x, the
    patient's left; columns along +y, posterior)."""
    if not orientation:
        return False, False
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    if abs(abs(row[0]) - 1) < 1e-3 and abs(abs(col[1]) - 1) < 1e-3:
        return col[1] < 0, row[0] < 0  # (flip rows, flip columns)
    return False, False


def _compression_problem(ds) -> str | None:
    """Why pydicom cannot decode this file's compressed pixel data, or None."""
    syntax = getattr(ds.get("file_meta"), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"compressed with {syntax.name}, which pydicom cannot decode"
    if not decoder.is_available:
        return f"compressed with {syntax.name}; install one of: {'; '.join(decoder.missing_dependencies)}"
    return None


def _modality_lut(stored: np.ndarray, ds) -> np.ndarray:
    """HU (or the modality's values) of every frame, with each frame's own rescale in enhanced
    files (PixelValueTransformationSequence) and the file's otherwise."""
    frames = stored if stored.ndim == 3 else stored[None]
    groups = frame_groups(ds, len(frames))
    transforms = [g.get("PixelValueTransformationSequence") for g in groups] if groups else []
    if not any(t is not None for t in transforms):
        return np.asarray(apply_modality_lut(frames, ds), dtype=np.float32)
    return np.stack([np.asarray(apply_modality_lut(frame, ds if t is None else t), dtype=np.float32)
                     for frame, t in zip(frames, transforms)])


def read_pixels(path: str, modality: str, orientation=None) -> np.ndarray:
    """Pixel values of one file as float (frames, rows, cols): HU for CT via the modality LUT,
    padding set to air (CT) or the minimum (other modalities)."""
    try:
        ds = read_dataset(Path(path))
    except Exception as err:
        raise UnreadableInput(path, f"unreadable DICOM: {one_line(err)}") from err
    if ds.get("SamplesPerPixel", 1) != 1:
        raise UnreadableInput(path, f"colour image ({ds.SamplesPerPixel} samples per pixel), "
                                    "not a grey scan")
    problem = _compression_problem(ds)
    if problem:
        raise UnreadableInput(path, f"cannot decode pixel data: {problem}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = ds.pixel_array
        values = _modality_lut(stored, ds)
    except Exception as err:
        raise UnreadableInput(path, f"cannot decode pixel data: {one_line(err)}") from err
    stored = stored.reshape(values.shape)
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        limit = ds.get("PixelPaddingRangeLimit", padding)
        low, high = sorted((padding, limit))
        pad = (stored >= low) & (stored <= high)
        if pad.any():
            values[pad] = AIR_HU if modality == "CT" else values[~pad].min(initial=0)
    flip_rows, flip_cols = _canonical_flips(orientation)
    if flip_rows:
        values = values[:, ::-1]
    if flip_cols:
        values = values[:, :, ::-1]
    return values
