"""Write volumes as DICOM series (CT image storage), for tests, benchmarks and demos.

The stored values are ``(HU - intercept) / slope``, so reading them back through the modality
LUT gives the volume again. Encoding options cover what real archives contain: signed or unsigned
pixels, padding values, implicit VR, big endian, RLE and JPEG 2000 compression.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


def write_series(folder: str | Path, hu: np.ndarray, *, series_uid: str | None = None,
                 patient_id: str = "PHANTOM", modality: str = "CT", spacing: float = 0.7,
                 thickness: float = 2.5, z0: float = -100.0, slope: float = 1.0,
                 intercept: float = -1024.0, signed: bool = True, padding: int | None = None,
                 encoding: str = "explicit", names: str = "instance", positions=None,
                 orientation=(1, 0, 0, 0, 1, 0), with_position: bool = True,
                 seed: int = 0) -> list[Path]:
    """Write ``hu`` (n, rows, cols) as one series; returns the files in slice order.

    encoding: explicit | implicit | big_endian | rle | jpeg2000 (needs slices of 64 px or more).
    names: instance (IM00001.dcm), uid (SOPInstanceUID.dcm) or shuffled (random order names).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = hu.shape
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    stored = np.rint((np.asarray(hu, np.float64) - intercept) / slope)
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"stored values {stored.min()}..{stored.max()} do not fit {dtype.__name__}")
    stored = stored.astype(dtype)
    order = np.random.default_rng(seed).permutation(n) if names == "shuffled" else np.arange(n)
    positions = positions if positions is not None else [z0 + k * thickness for k in range(n)]
    syntax = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian,
              "big_endian": ExplicitVRBigEndian, "rle": ExplicitVRLittleEndian,
              "jpeg2000": ExplicitVRLittleEndian}[encoding]
    files = []
    for k in range(n):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASS.get(modality, CTImageStorage)
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = syntax
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        if with_position:
            ds.ImagePositionPatient = [-cols * spacing / 2, -rows * spacing / 2, positions[k]]
            ds.ImageOrientationPatient = list(orientation)
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = thickness
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if padding is not None:
            ds.PixelPaddingValue = padding
        little = encoding != "big_endian"
        ds.PixelData = stored[k].astype(stored.dtype.newbyteorder("<" if little else ">")).tobytes()
        if encoding == "rle":
            ds.compress(RLELossless)
        elif encoding == "jpeg2000":
            ds.compress(JPEG2000Lossless)
        name = {"instance": f"IM{k + 1:05d}.dcm", "uid": f"{sop_uid}.dcm",
                "shuffled": f"{order[k]:05d}-{series_uid}.dcm"}[names]
        path = folder / name
        ds.save_as(path, implicit_vr=encoding == "implicit", little_endian=little,
                   enforce_file_format=True)
        files.append(path)
    return files
