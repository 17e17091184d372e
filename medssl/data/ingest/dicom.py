"""DICOM: read headers, group files into series by SeriesInstanceUID, order slices (frames of
enhanced multi-frame files by their functional groups) along the slice normal, and convert pixels
to Hounsfield units with pydicom's modality LUT. A file that cannot be used is a SkipItem naming
the problem; copies of an instance (SOPInstanceUID) count once."""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import MediaStorageDirectoryStorage

HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality", "Rows",
               "Columns", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
               "PixelSpacing", "NumberOfFrames", "SamplesPerPixel", "SOPInstanceUID",
               "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"]
AIR_HU = -1024
ORIENTATION_TOLERANCE = 1e-3


class SkipItem(Exception):
    """An input that cannot be ingested; the message is the reason for the errors report."""

    def __init__(self, reason: str, file: str | None = None):
        super().__init__(reason)
        self.file = file


def one_line(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _read(path: Path, **kwargs) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, **kwargs)
        except InvalidDicomError:
            return pydicom.dcmread(path, force=True, **kwargs)  # DICOM without a file preamble


def _field(ds, keyword: str, convert, default=None):
    """``convert(ds.keyword)``, ``default`` when absent or empty, SkipItem naming a bad value."""
    try:
        value = ds.get(keyword)
    except Exception as err:
        raise SkipItem(f"bad header field {keyword}: {one_line(err)}") from err
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except Exception as err:
        raise SkipItem(f"bad header field {keyword} {value!r}: {one_line(err)}") from err


def _floats(count: int):
    """Converter to a list of ``count`` floats; None for a value of another length."""
    def convert(value):
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue))
                                     else [value])]
        return values if len(values) == count else None
    return convert


def frame_groups(ds, frames: int) -> list[dict] | None:
    """Functional group macros of each frame of an enhanced multi-frame file (per-frame items
    over shared ones): [{macro keyword: its first item}], or None without functional groups."""
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared_seq and not per_frame:
        return None
    if per_frame and len(per_frame) != frames:
        raise SkipItem(f"bad header: PerFrameFunctionalGroupsSequence has {len(per_frame)} items "
                       f"for {frames} frames")
    shared = _macros(shared_seq[0]) if shared_seq else {}
    return [{**shared, **(_macros(per_frame[k]) if per_frame else {})} for k in range(frames)]


def _macros(item) -> dict:
    return {e.keyword: e.value[0] for e in item if e.VR == "SQ" and e.value}


def _frame_geometry(ds, frames: int) -> list[dict] | None:
    """Position, orientation and pixel spacing of each frame from its functional groups."""
    groups = frame_groups(ds, frames)
    if groups is None:
        return None
    geometry = []
    for group in groups:
        position, orientation, measures = (group.get(k, Dataset()) for k in (
            "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"))
        geometry.append({
            "position": _field(position, "ImagePositionPatient", _floats(3)),
            "orientation": _field(orientation, "ImageOrientationPatient", _floats(6)),
            "spacing": _field(measures, "PixelSpacing", _floats(2)),
        })
    return geometry


def read_header(path: Path) -> dict:
    """The header fields ingestion needs, or SkipItem with the reason."""
    with warnings.catch_warnings():  # pydicom warns of invalid values; bad ones become the reason
        warnings.simplefilter("ignore")
        return _header(path)


def _header(path: Path) -> dict:
    try:
        ds = _read(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as err:  # pydicom raises many kinds on damaged files
        raise SkipItem(f"unreadable DICOM: {one_line(err)}") from err
    uid = _field(ds, "SeriesInstanceUID", str)
    if not uid:
        if getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None) == MediaStorageDirectoryStorage:
            raise SkipItem("a DICOMDIR (index of a DICOM folder), not an image")
        if "Rows" in ds:
            raise SkipItem("image without SeriesInstanceUID: its series is unknown")
        raise SkipItem("not a DICOM image (no SeriesInstanceUID)")
    frames = _field(ds, "NumberOfFrames", int, 1)
    if frames < 1:
        raise SkipItem(f"bad header field NumberOfFrames {frames!r}: no frames")
    geometry = _frame_geometry(ds, frames)
    return {
        "file": str(path),
        "series_uid": uid,
        "sop_uid": _field(ds, "SOPInstanceUID", str, ""),
        "study_uid": _field(ds, "StudyInstanceUID", str, ""),
        "patient_id": _field(ds, "PatientID", str, ""),
        "modality": _field(ds, "Modality", str, "").upper(),
        "rows": _field(ds, "Rows", int, 0),
        "cols": _field(ds, "Columns", int, 0),
        "frames": frames,
        "samples": _field(ds, "SamplesPerPixel", int, 1),
        "position": _field(ds, "ImagePositionPatient", _floats(3)),
        "orientation": _field(ds, "ImageOrientationPatient", _floats(6)),
        "instance": _field(ds, "InstanceNumber", int),
        "spacing": _field(ds, "PixelSpacing", _floats(2)) or [np.nan, np.nan],
        "frame_geometry": geometry,
        "copies": [],  # other files holding the same instance
    }


def drop_duplicate_instances(headers: list[dict]) -> tuple[list[dict], int]:
    """One header per DICOM instance (SOPInstanceUID); the other files holding it become
    ``copies`` of the first (read when it cannot be). Returns (headers, copies found)."""
    unique, first_of, copies = [], {}, 0
    for h in headers:
        key = (h["series_uid"], h["sop_uid"], h["rows"], h["cols"], h["frames"])
        if h["sop_uid"] and key in first_of:
            first_of[key]["copies"].append(h["file"])
            copies += 1
        else:
            first_of[key] = h
            unique.append(h)
    return unique, copies


@dataclass
class SeriesPlan:
    """One DICOM series to ingest: its slices (file and frame) in order, and its files' headers."""

    uid: str
    slices: list[dict]  # file, frame (None: a single-frame file), source, position, spacing
    headers: dict[str, dict]  # file -> header
    duplicates: int = 0  # slices dropped as copies of others

    @property
    def first(self) -> dict:
        return self.headers[self.slices[0]["file"]]

    @property
    def positions(self) -> list[float]:
        return [s["position"] for s in self.slices]

    @property
    def sources(self) -> list[str]:
        return [s["source"] for s in self.slices]

    @property
    def spacing(self) -> list[float]:
        return self.slices[0]["spacing"]


def _slices_of(h: dict) -> list[dict]:
    """The slices of one file: itself, or each frame of a multi-frame file with the frame's
    geometry (enhanced files) or none (frames of other multi-frame files share no position)."""
    if h["frames"] == 1 and not h["frame_geometry"]:
        return [{"file": h["file"], "frame": None, "source": h["file"], "position": h["position"],
                 "orientation": h["orientation"], "spacing": h["spacing"], "instance": h["instance"]}]
    geometry = h["frame_geometry"] or [{}] * h["frames"]
    return [{"file": h["file"], "frame": k,
             "source": h["file"] if h["frames"] == 1 else f"{h['file']}#frame{k}",
             "position": g.get("position"), "orientation": g.get("orientation") or h["orientation"],
             "spacing": g.get("spacing") or h["spacing"], "instance": h["instance"]}
            for k, g in enumerate(geometry)]


def _name(s: dict) -> str:
    return Path(s["source"]).name


def order_series(headers: list[dict]) -> SeriesPlan:
    """Sort one series' slices (frames of multi-frame files included) by position along the
    slice normal (InstanceNumber, then frame number as fallback).

    Raises SkipItem, naming a file, for mixed sizes or orientations, different slices at one
    position, or missing slices (gaps). Slices at one position with the same pixels are kept once.
    """
    uid = headers[0]["series_uid"]
    by_file = {h["file"]: h for h in headers}
    sizes = Counter((h["rows"], h["cols"]) for h in headers)
    if len(sizes) > 1:
        usual = sizes.most_common(1)[0][0]
        odd = next(h for h in headers if (h["rows"], h["cols"]) != usual)
        raise SkipItem(f"series has slices of mixed sizes {sorted(sizes)}: {Path(odd['file']).name} is "
                       f"{odd['rows']}x{odd['cols']}, most are {usual[0]}x{usual[1]}", odd["file"])
    slices = [s for h in headers for s in _slices_of(h)]
    if all(s["orientation"] and s["position"] for s in slices):
        orientation = slices[0]["orientation"]
        for s in slices:
            if np.abs(np.subtract(s["orientation"], orientation)).max() > ORIENTATION_TOLERANCE:
                raise SkipItem(f"slices of different orientations: {_name(slices[0])} and {_name(s)}",
                               s["file"])
        normal = np.cross(orientation[:3], orientation[3:])
        for s in slices:
            s["position"] = float(np.dot(s["position"], normal))
        slices.sort(key=lambda s: s["position"])
        slices, duplicates = _drop_repeated_slices(slices, by_file)
        _check_spacing(slices)
    else:
        if all(s["instance"] is not None for s in slices):
            slices.sort(key=lambda s: (s["instance"], s["frame"] or 0))
        else:
            slices.sort(key=lambda s: (s["file"], s["frame"] or 0))
        for s in slices:
            s["position"] = np.nan
        duplicates = 0
    return SeriesPlan(uid, slices, by_file, duplicates)


def _same_position(a: dict, b: dict) -> bool:
    return abs(a["position"] - b["position"]) < 1e-3


def _drop_repeated_slices(slices: list[dict], headers: dict) -> tuple[list[dict], int]:
    """Keep one of several slices at one position when they hold the same values; SkipItem naming
    both files otherwise."""
    kept, dropped, files = [slices[0]], 0, {}
    for s in slices[1:]:
        if not _same_position(kept[-1], s):
            kept.append(s)
            continue
        first = kept[-1]
        reason = (f"duplicate slice position {s['position']:.2f} mm: {_name(first)} and {_name(s)}")
        try:
            same = np.array_equal(_slice_values(first, headers, files), _slice_values(s, headers, files))
        except SkipItem as err:
            raise SkipItem(f"{reason} ({err})", s["file"]) from err
        if not same:
            raise SkipItem(f"{reason} hold different values", s["file"])
        dropped += 1
    return kept, dropped


def _slice_values(s: dict, headers: dict, files: dict) -> np.ndarray:
    if s["file"] not in files:  # each file read once
        h = headers[s["file"]]
        files[s["file"]] = read_file(h, h["modality"], s["orientation"])
    return files[s["file"]][s["frame"] or 0]


def _check_spacing(slices: list[dict]) -> None:
    if len(slices) < 2:
        return
    positions = np.array([s["position"] for s in slices])
    steps = np.diff(positions)
    step = float(np.median(steps))
    big = np.nonzero(steps > 1.5 * step)[0]
    if len(big):
        i = int(big[0])
        raise SkipItem(f"missing slices: gap of {steps[i]:.2f} mm after position "
                       f"{positions[i]:.2f} mm (slice spacing {step:.2f} mm), between "
                       f"{_name(slices[i])} and {_name(slices[i + 1])}", slices[i + 1]["file"])


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
        ds = _read(Path(path))
    except Exception as err:
        raise SkipItem(f"unreadable DICOM: {one_line(err)}", path) from err
    if ds.get("SamplesPerPixel", 1) != 1:
        raise SkipItem(f"colour image ({ds.SamplesPerPixel} samples per pixel), not a grey scan", path)
    problem = _compression_problem(ds)
    if problem:
        raise SkipItem(f"cannot decode pixel data: {problem}", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = ds.pixel_array
        values = _modality_lut(stored, ds)
    except Exception as err:
        raise SkipItem(f"cannot decode pixel data: {one_line(err)}", path) from err
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


def read_file(header: dict, modality: str, orientation=None) -> np.ndarray:
    """read_pixels of a file, or of a copy of it (the same instance elsewhere) if it fails."""
    try:
        return read_pixels(header["file"], modality, orientation)
    except SkipItem as err:
        for copy in header["copies"]:
            try:
                return read_pixels(copy, modality, orientation)
            except SkipItem:
                continue
        raise err


def read_series(plan: SeriesPlan) -> np.ndarray:
    """All slices of a series as float32 (n, rows, cols), in plan order."""
    modality = plan.first["modality"]
    files: dict[str, np.ndarray] = {}
    parts = []
    for s in plan.slices:
        if s["file"] not in files:
            try:
                files[s["file"]] = read_file(plan.headers[s["file"]], modality, s["orientation"])
            except SkipItem as err:
                raise SkipItem(f"{err}; series {plan.uid} skipped (a slice would be missing)",
                               s["file"]) from err
        parts.append(files[s["file"]][s["frame"] or 0])
    return np.stack(parts).astype(np.float32, copy=False)
