"""NIfTI volumes (.nii, .nii.gz) as axial slices in one canonical orientation."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import UnreadableInput


def read_volume(path: str | Path) -> tuple[np.ndarray, list[float], tuple[float, float]]:
    """(volumes (t, n, rows, cols) float32, slice positions in mm, (row, col) spacing in mm).

    The volume is reoriented to RAS+ (nibabel's closest canonical), scaling (scl_slope/inter)
    applied, and each axial slice laid out like an axial DICOM image: anterior at the top, the
    patient's right on the image's left; slices ordered inferior to superior.
    """
    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as err:
        raise UnreadableInput(path, f"unreadable NIfTI: {type(err).__name__}: {err}") from err
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise UnreadableInput(path, f"NIfTI with {data.ndim} dimensions; expected a 3D or 4D volume")
    # (x: L->R, y: P->A, z: I->S, t) -> (t, z, rows: A->P, cols: R->L)
    slices = np.flip(data.transpose(3, 2, 1, 0), axis=(2, 3))
    zooms = image.header.get_zooms()
    origin = image.affine @ np.array([0, 0, 0, 1.0])
    step = image.affine[2, 2]
    positions = [float(origin[2] + k * step) for k in range(slices.shape[1])]
    return np.ascontiguousarray(slices), positions, (float(zooms[1]), float(zooms[0]))
