"""Image files of the downstream tasks: which files count as images, how they are read, and the
up-front check that decodes every one of them.

The rule: a file is an image if its suffix is an image suffix (PNG, JPEG, TIFF, BMP); it is DICOM
if its suffix is .dcm/.dicom/.ima or it starts with the DICOM preamble ('DICM' at byte 128);
anything else (Thumbs.db, desktop.ini, README.txt, ...) is not an image.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.dicom_pixels import looks_like_dicom, read_pixels
from ..data.errors import UnreadableInput
from ..data.images import IMAGE_SUFFIXES, WHITE_16, read_picture
from ..data.input_mapping import DEFAULT, InputMapping

NOT_AN_IMAGE = ("not an image: neither an image suffix (" + ", ".join(sorted(IMAGE_SUFFIXES))
                + ") nor DICOM (a .dcm/.dicom/.ima suffix or the 'DICM' preamble); ignored")


def image_kind(path: Path) -> str | None:
    """'image', 'dicom', or None for a file that is not an image (see the module's rule)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "dicom" if looks_like_dicom(path) else None


def read_grey(path: str | Path, mapping: InputMapping = DEFAULT) -> np.ndarray:
    """An image file (PNG 8/16 bit, JPEG, TIFF, BMP) or a DICOM file as float32 (H, W) in
    [0, 1], as the backbone's ``mapping`` says: DICOM values (modality LUT) through its
    intensity mapping; 16-bit pictures through it too if the backbone was pre-trained on raw
    values, else divided by 65535; other pictures divided by 255. UnreadableInput names a file
    that cannot be used."""
    path = Path(path)
    if image_kind(path) == "dicom":
        try:
            values = read_pixels(str(path), "CT")[0]
        except UnreadableInput as err:
            raise UnreadableInput(path, f"unreadable DICOM image ({err.reason})") from err
        return np.asarray(mapping.hu_intensity()(values), dtype=np.float32)
    values, white = read_picture(path)
    raw = mapping.raw_intensity() if white == WHITE_16 else None
    return np.asarray(raw(values), dtype=np.float32) if raw else np.clip(values / white, 0, 1)


# (path, mtime, size) -> problem or None: a task loaded again (every sweep run) is not decoded again
_checked: dict[tuple[str, int, int], str | None] = {}


def _problem(path: str, mapping: InputMapping) -> str | None:
    try:
        stat = os.stat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _checked:
        try:
            read_grey(path, mapping)
            _checked[key] = None
        except UnreadableInput as err:
            _checked[key] = err.reason
    return _checked[key]


def check_images(paths, mapping: InputMapping = DEFAULT, progress: bool = True,
                 workers: int | None = None) -> dict[str, str]:
    """Decode every file once; {path: reason} for those that fail. Pictures are decoded in
    threads; DICOM files in this thread (their reader changes the process-wide warning filters)."""
    paths = [str(p) for p in paths]
    kinds = {p: image_kind(Path(p)) for p in paths}
    dicom = [p for p in paths if kinds[p] == "dicom"]
    pictures = [p for p in paths if kinds[p] != "dicom"]
    workers = workers or min(4, os.cpu_count() or 1)
    bad = {}
    with tqdm(total=len(paths), desc="checking images", unit="img", disable=not progress) as bar, \
            ThreadPoolExecutor(workers) as pool:
        pending = pool.map(_problem, pictures, [mapping] * len(pictures))
        for path in dicom:
            if (reason := _problem(path, mapping)) is not None:
                bad[path] = reason
            bar.update()
        for path, reason in zip(pictures, pending):
            if reason is not None:
                bad[path] = reason
            bar.update()
    return bad
