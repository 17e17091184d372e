"""DICOM: read headers, group files into series by SeriesInstanceUID, order slices (frames of
enhanced multi-frame files by their functional groups) along the slice normal, and convert pixels
to Hounsfield units with pydicom's modality LUT. A file that cannot be used is an UnreadableInput
naming the problem; copies of an instance (SOPInstanceUID) count once."""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import MediaStorageDirectoryStorage

from ..dicom_pixels import frame_groups, one_line, read_dataset, read_pixels
from ..errors import UnreadableInput

HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality", "Rows",
               "Columns", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber",
               "PixelSpacing", "NumberOfFrames", "SamplesPerPixel", "SOPInstanceUID",
               "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"]
ORIENTATION_TOLERANCE = 1e-3


def _field(ds, keyword: str, convert, default=None):
    """``convert(ds.keyword)``, ``default`` when absent or empty, UnreadableInput naming a bad value."""
    try:
        value = ds.get(keyword)
    except Exception as err:
        raise UnreadableInput(None, f"bad header field {keyword}: {one_line(err)}") from err
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except Exception as err:
        raise UnreadableInput(None, f"bad header field {keyword} {value!r}: {one_line(err)}") from err


def _floats(count: int):
    """Converter to a list of ``count`` floats; None for a value of another length."""
    def convert(value):
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue))
                                     else [value])]
        return values if len(values) == count else None
    return convert


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
    """The header fields ingestion needs, or UnreadableInput with the reason."""
    with warnings.catch_warnings():  # pydicom warns of invalid values; bad ones become the reason
        warnings.simplefilter("ignore")
        return _header(path)


def _header(path: Path) -> dict:
    if Path(path).stat().st_size == 0:
        raise UnreadableInput(None, "empty file (0 bytes)")
    try:
        ds = read_dataset(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as err:  # pydicom raises many kinds on damaged files
        raise UnreadableInput(None, f"unreadable DICOM: {one_line(err)}") from err
    uid = _field(ds, "SeriesInstanceUID", str)
    if not uid:
        if getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None) == MediaStorageDirectoryStorage:
            raise UnreadableInput(None, "a DICOMDIR (index of a DICOM folder), not an image")
        if "Rows" in ds:
            raise UnreadableInput(None, "image without SeriesInstanceUID: its series is unknown")
        raise UnreadableInput(None, "not a DICOM image (no SeriesInstanceUID)")
    frames = _field(ds, "NumberOfFrames", int, 1)
    if frames < 1:
        raise UnreadableInput(None, f"bad header field NumberOfFrames {frames!r}: no frames")
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
    ``copies`` of the first, in reading order (read, in turn, only while those before cannot be).
    Returns (headers, copies found)."""
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
    repeated: list = field(default_factory=list)  # (slice, slice kept instead): same position and values

    @property
    def duplicates(self) -> int:
        """Slices dropped as copies of others."""
        return len(self.repeated)

    @property
    def first(self) -> dict:
        return self.headers[self.slices[0]["file"]]

    @property
    def positions(self) -> list[float]:
        return [s["position"] for s in self.slices]

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

    Raises UnreadableInput, naming a file, for mixed sizes or orientations, different slices at one
    position, or missing slices (gaps). Slices at one position with the same pixels are kept once.
    """
    uid = headers[0]["series_uid"]
    by_file = {h["file"]: h for h in headers}
    sizes = Counter((h["rows"], h["cols"]) for h in headers)
    if len(sizes) > 1:
        usual = sizes.most_common(1)[0][0]
        odd = next(h for h in headers if (h["rows"], h["cols"]) != usual)
        raise UnreadableInput(odd["file"], f"series has slices of mixed sizes {sorted(sizes)}: "
                              f"{Path(odd['file']).name} is {odd['rows']}x{odd['cols']}, most are "
                              f"{usual[0]}x{usual[1]}")
    slices = [s for h in headers for s in _slices_of(h)]
    if all(s["orientation"] and s["position"] for s in slices):
        orientation = slices[0]["orientation"]
        for s in slices:
            if np.abs(np.subtract(s["orientation"], orientation)).max() > ORIENTATION_TOLERANCE:
                raise UnreadableInput(s["file"], f"slices of different orientations: "
                                                 f"{_name(slices[0])} and {_name(s)}")
        normal = np.cross(orientation[:3], orientation[3:])
        for s in slices:
            s["position"] = float(np.dot(s["position"], normal))
        slices.sort(key=lambda s: s["position"])
        slices, repeated = _drop_repeated_slices(slices, by_file)
        _check_spacing(slices)
    else:
        if all(s["instance"] is not None for s in slices):
            slices.sort(key=lambda s: (s["instance"], s["frame"] or 0))
        else:
            slices.sort(key=lambda s: (s["file"], s["frame"] or 0))
        for s in slices:
            s["position"] = np.nan
        repeated = []
    return SeriesPlan(uid, slices, by_file, repeated)


def _same_position(a: dict, b: dict) -> bool:
    return abs(a["position"] - b["position"]) < 1e-3


def _drop_repeated_slices(slices: list[dict], headers: dict) -> tuple[list[dict], list]:
    """Keep one of several slices at one position when they hold the same values; UnreadableInput
    naming both files otherwise. Returns the slices kept and (slice, slice kept instead) of the
    others."""
    kept, dropped, files = [slices[0]], [], {}
    for s in slices[1:]:
        if not _same_position(kept[-1], s):
            kept.append(s)
            continue
        first = kept[-1]
        reason = (f"duplicate slice position {s['position']:.2f} mm: {_name(first)} and {_name(s)}")
        try:
            same = np.array_equal(_slice_values(first, headers, files), _slice_values(s, headers, files))
        except UnreadableInput as err:
            raise UnreadableInput(s["file"], f"{reason} ({err.reason})") from err
        if not same:
            raise UnreadableInput(s["file"], f"{reason} hold different values")
        dropped.append((s, first))
    return kept, dropped


def _slice_values(s: dict, headers: dict, files: dict) -> np.ndarray:
    if s["file"] not in files:  # each file read once
        h = headers[s["file"]]
        files[s["file"]], _ = read_file(h, h["modality"], s["orientation"])
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
        raise UnreadableInput(slices[i + 1]["file"], f"missing slices: gap of {steps[i]:.2f} mm "
                              f"after position {positions[i]:.2f} mm (slice spacing {step:.2f} mm), "
                              f"between {_name(slices[i])} and {_name(slices[i + 1])}")


def read_file(header: dict, modality: str, orientation=None,
              unreadable: list | None = None) -> tuple[np.ndarray, str]:
    """read_pixels of the first copy of an instance that can be read (its file, then its other
    copies in reading order), and that copy's path; the copies after it are not read. (file,
    reason) of each copy that could not be read is added to ``unreadable``, except the file's
    own (the error raised when no copy can be read: the caller names it)."""
    instance, failed = f"instance {header['sop_uid']}", []
    for path in [header["file"], *header["copies"]]:
        try:
            values = read_pixels(path, modality, orientation)
        except UnreadableInput as err:
            failed.append(err)
            continue
        if unreadable is not None:
            unreadable += [(e.path, f"{e.reason}; a copy of {instance}, read from {path} instead")
                           for e in failed]
        return values, path
    if unreadable is not None:
        unreadable += [(e.path, f"{e.reason}; a copy of {instance}: no copy of it can be read")
                       for e in failed[1:]]
    raise failed[0]


def read_series(plan: SeriesPlan, unreadable: list | None = None,
                read_from: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """All slices of a series as float32 (n, rows, cols), in plan order, and each slice's source:
    the file its pixels came from (a copy of the planned one if that cannot be read). (file,
    reason) of the copies of an instance that cannot be read are added to ``unreadable``, and
    each planned file read to ``read_from`` (file -> the copy read), even if the series then
    fails."""
    modality = plan.first["modality"]
    files: dict[str, tuple[np.ndarray, str]] = {}
    read_from = {} if read_from is None else read_from
    parts, sources = [], []
    for s in plan.slices:
        if s["file"] not in files:
            try:
                files[s["file"]] = read_file(plan.headers[s["file"]], modality, s["orientation"],
                                             unreadable)
            except UnreadableInput as err:
                raise UnreadableInput(s["file"], f"{err.reason}; series {plan.uid} skipped (a slice "
                                                 "would be missing)") from err
            read_from[s["file"]] = files[s["file"]][1]
        values, source = files[s["file"]]
        parts.append(values[s["frame"] or 0])
        sources.append(source + s["source"][len(s["file"]):])  # with its #frameK
    return np.stack(parts).astype(np.float32, copy=False), sources


def ignored_copies(plan: SeriesPlan, read_from: dict, unreadable=(), stored: bool = True) -> list:
    """(file, kept, series_uid, instance) of each copy of the plan's instances, and each repeated
    slice, that was not used: for an instance read (``read_from``: planned file -> copy read),
    the copies other than the one read and those in ``unreadable`` ((file, reason), listed in the
    errors report instead); for one not read, its other copies. ``kept`` is the copy read, empty
    unless the series is ``stored``."""
    failed = {file for file, _ in unreadable}
    rows = []
    for h in plan.headers.values():
        read = read_from.get(h["file"])
        others = h["copies"] if read is None else [f for f in [h["file"], *h["copies"]] if f != read]
        rows += [(f, read if stored and read else "", plan.uid, h["sop_uid"])
                 for f in others if f not in failed]
    for s, first in plan.repeated:
        read = read_from.get(first["file"])
        kept = read + first["source"][len(first["file"]):] if stored and read else ""
        rows.append((s["source"], kept, plan.uid, f"slice at {s['position']:.2f} mm"))
    return rows
