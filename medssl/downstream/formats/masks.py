"""Segmentation tasks: images paired with label masks, one folder per patient.

    <task>/
      labels.json           optional: {"0": "background", "1": "liver", "2": "lesion"}
      splits.json           optional: {"train": [patients], "val": [...], "test": [...]}
      <patient>/            one of three layouts:
        image.nii.gz  mask.nii.gz        a CT volume and its label map (NIfTI, .nii or .nii.gz)
        images/<stem>.png|.npy|.dcm  masks/<stem>.png|.npy
                                         slices and masks paired by file stem
        images/*.dcm  masks/<seg>.dcm    a DICOM series and its DICOM-SEG (read with highdicom)

Volumes are turned to the closest canonical (RAS+) orientation and cut into axial slices shown
as a radiologist reads them (the patient's right on the image's left, anterior up), image and
mask alike. NIfTI, ``.npy`` and DICOM images hold CT values (HU), mapped as the backbone was fed
in pre-training; PNG images are pictures, divided by their white. Masks hold label values
(integers): those of ``labels.json``, or without it the values found (0 named background); a
DICOM-SEG's segment numbers are its values and its segment labels the classes' names.

Every pair is read once before training: an image and mask of different sizes, a mask value
``labels.json`` lacks, a non-integer or colour mask, an unreadable file or an image without its
mask is left out and named (``SegmentationData.skipped``); slices whose mask is all background
are kept and counted. Without ``splits.json`` the patients are split seeded into train / val /
test, stratified by whether a patient shows the rarest class where the counts allow: slices of
one patient never sit in two splits.
"""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRLittleEndian
from tqdm.auto import tqdm

from ...data.errors import UnreadableInput
from ...data.input_mapping import DEFAULT, InputMapping
from ..images import read_grey
from ..task_data import SegmentationData, SegmentationSplit, SlicePair, TaskError
from .base import TaskFormat
from .checks import stratified_split

LABELS_FILE, SPLITS_FILE = "labels.json", "splits.json"
NIFTI = (".nii", ".nii.gz")
HU_ARRAYS = (".npy",)
MASK_SUFFIXES = (".png", ".npy")
IMAGE_SUFFIXES = (".png", ".npy", ".dcm")
BACKGROUND = "background"


def _nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


# readers of one file; the last few volumes read are kept, so a patient's slices read in a row
# decode its volume once

@lru_cache(maxsize=2)
def read_volume(path: str) -> np.ndarray:
    """A NIfTI file's array in the closest canonical orientation, as (slices, rows, columns) of
    axial slices in display orientation. UnreadableInput names a file that is not a 3-D volume."""
    try:
        image = nib.as_closest_canonical(nib.load(path))
        data = np.asanyarray(image.dataobj)
    except Exception as err:  # nibabel raises many kinds on a damaged file
        raise UnreadableInput(path, f"unreadable NIfTI file: {type(err).__name__}: {err}") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise UnreadableInput(path, f"NIfTI array of shape {data.shape}: a volume pair needs 3-D volumes")
    return np.ascontiguousarray(data[::-1, ::-1, :].transpose(2, 1, 0))


@lru_cache(maxsize=2)
def read_segmentation(path: str) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """A DICOM-SEG file as ({SOP Instance UID of a source image: segment numbers (rows,
    columns)}, {segment number: segment label})."""
    import highdicom as hd  # imported here: only DICOM-SEG tasks need it

    try:
        seg = hd.seg.Segmentation.from_dataset(_little_endian(pydicom.dcmread(path)))
        names = {int(n): seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()}
        uids = sorted({uid[2] for uid in seg.get_source_image_uids()})
        maps = {uid: seg.get_pixels_by_source_instance([uid], combine_segments=True, ignore_spatial_locations=True,
                                                       assert_missing_frames_are_empty=True)[0]
                for uid in uids}
    except Exception as err:  # highdicom / pydicom raise many kinds on a file that is not a usable SEG
        raise UnreadableInput(path, f"unreadable DICOM-SEG: {type(err).__name__}: {err}") from err
    return maps, names


def _little_endian(dataset: pydicom.Dataset) -> pydicom.Dataset:
    """``dataset`` in explicit VR little endian (highdicom reads no other uncompressed syntax):
    a big-endian file's pixels decoded and stored again, bit-packed where they were."""
    syntax = dataset.file_meta.TransferSyntaxUID
    if syntax.is_little_endian or syntax.is_compressed:
        return dataset
    frames = dataset.pixel_array
    dataset.PixelData = (pack_bits(frames) if dataset.BitsAllocated == 1
                         else frames.astype(frames.dtype.newbyteorder("<")).tobytes())
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.set_original_encoding(False, True)
    return dataset


def is_segmentation(path: Path) -> bool:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality") == "SEG"
    except Exception:
        return False


def read_image(pair: SlicePair, mapping: InputMapping = DEFAULT) -> np.ndarray:
    """The pair's image as float32 (H, W) in [0, 1]: CT values through the backbone's mapping."""
    path = Path(pair.image)
    if pair.slice is not None and not isinstance(pair.slice, str):
        values = read_volume(pair.image)[pair.slice]
    elif path.suffix in HU_ARRAYS:
        values = _array(path)
    else:
        return read_grey(path, mapping)
    return np.asarray(mapping.hu_intensity()(values.astype(np.float32)), dtype=np.float32)


def read_mask(pair: SlicePair) -> np.ndarray:
    """The pair's label values as int64 (H, W)."""
    path = Path(pair.mask)
    if isinstance(pair.slice, str):
        maps, _ = read_segmentation(pair.mask)
        if pair.slice not in maps:
            raise UnreadableInput(path, f"holds no frames of image {pair.image} (SOP Instance UID {pair.slice})")
        return maps[pair.slice].astype(np.int64)
    if pair.slice is not None:
        values = read_volume(pair.mask)[pair.slice]
    elif path.suffix == ".npy":
        values = _array(path)
    else:
        try:
            with Image.open(path) as picture:
                if picture.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                    raise UnreadableInput(path, f"a {picture.mode} picture: a mask holds one label value per pixel")
                values = np.asarray(picture)
        except (OSError, ValueError) as err:
            raise UnreadableInput(path, f"unreadable mask: {type(err).__name__}: {err}") from err
    if not np.issubdtype(values.dtype, np.integer) and not np.issubdtype(values.dtype, np.bool_):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise UnreadableInput(path, "mask holds values that are not whole numbers: not label values")
    return np.asarray(values, dtype=np.int64)


def _array(path: Path) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UnreadableInput(path, f"unreadable .npy array: {err}") from err
    if values.ndim != 2:
        raise UnreadableInput(path, f"array of shape {values.shape}, expected 2-D")
    return values


# the layouts of a patient folder

def patient_pairs(folder: Path) -> tuple[list[SlicePair], list[tuple[str, str]]]:
    """The slice pairs of one patient folder, and the (file, reason) of what cannot be paired."""
    patient = folder.name
    image, mask = _nifti(folder, "image"), _nifti(folder, "mask")
    if image or mask:
        if not (image and mask):
            return [], [(str(image or mask), f"{'mask' if image else 'image'}.nii(.gz) missing beside it")]
        try:
            slices = len(read_volume(str(image)))
        except UnreadableInput as err:
            return [], [(str(err.path), err.reason)]
        return [SlicePair(patient, str(image), str(mask), k) for k in range(slices)], []
    images, masks = folder / "images", folder / "masks"
    if not images.is_dir() or not masks.is_dir():
        return [], [(str(folder), "neither image + mask NIfTI files nor images/ and masks/ folders")]
    image_files = sorted(f for f in images.iterdir() if f.is_file() and not f.name.startswith("."))
    mask_files = sorted(f for f in masks.iterdir() if f.is_file() and not f.name.startswith("."))
    segs = [f for f in mask_files if f.suffix == ".dcm" and is_segmentation(f)]
    if segs:
        return _seg_pairs(patient, image_files, segs)
    by_stem = {f.stem: f for f in mask_files if f.suffix in MASK_SUFFIXES}
    pairs, left = [], [(str(f), "not a mask: a mask is .png or .npy") for f in mask_files if f.suffix not in
                       MASK_SUFFIXES]
    for file in image_files:
        if file.suffix not in IMAGE_SUFFIXES:
            left.append((str(file), "not an image of a segmentation task (.png, .npy, .dcm)"))
        elif file.stem not in by_stem:
            left.append((str(file), f"no mask masks/{file.stem}.png or .npy"))
        else:
            pairs.append(SlicePair(patient, str(file), str(by_stem.pop(file.stem))))
    left += [(str(f), f"no image images/{f.stem}.* for this mask") for f in by_stem.values()]
    return pairs, left


def _seg_pairs(patient, image_files, segs):
    if len(segs) > 1:
        return [], [(str(s), f"one of {len(segs)} DICOM-SEG files in masks/: a patient has one") for s in segs]
    try:
        maps, _ = read_segmentation(str(segs[0]))
    except UnreadableInput as err:
        return [], [(str(err.path), err.reason)]
    pairs, left = [], []
    for file in image_files:
        try:
            uid = str(pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        except Exception as err:
            left.append((str(file), f"unreadable DICOM header: {type(err).__name__}: {err}"))
            continue
        if uid in maps:
            pairs.append(SlicePair(patient, str(file), str(segs[0]), uid))
        else:
            left.append((str(file), f"{segs[0].name} does not segment this image (SOP Instance UID {uid})"))
    found = {p.slice for p in pairs}
    left += [(str(segs[0]), f"segments image {uid}, which is not in images/") for uid in sorted(set(maps) - found)]
    return pairs, left


# the task

def declared_labels(root: Path) -> dict[int, str] | None:
    path = root / LABELS_FILE
    if not path.is_file():
        return None
    try:
        labels = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as err:
        raise TaskError(f"{path}: expected {{\"label value\": \"name\", ...}} ({err})") from err
    if 0 not in labels:
        labels[0] = BACKGROUND
    return dict(sorted(labels.items()))


def check_pair(pair: SlicePair, known: dict[int, str] | None) -> tuple[str | None, set[int]]:
    """(why the pair cannot be used or None, the label values of its mask)."""
    try:
        mask = read_mask(pair)
        image = read_image(pair)
    except UnreadableInput as err:
        return f"{err.path}: {err.reason}", set()
    if image.shape != mask.shape:
        sizes = f"{image.shape[0]}x{image.shape[1]}, its mask {mask.shape[0]}x{mask.shape[1]}"
        return f"image {pair.image} is {sizes}", set()
    values = {int(v) for v in np.unique(mask)}
    unknown = sorted(values - set(known)) if known is not None else [v for v in values if v < 0]
    if unknown:
        why = f"not in {LABELS_FILE}" if known is not None else "negative"
        return f"label value(s) {unknown} {why}", set()
    return None, values


def _where(pair: SlicePair) -> str:
    return pair.mask if pair.slice is None or isinstance(pair.slice, str) else f"{pair.mask} (slice {pair.slice})"


def split_patients(patients: list[str], strata: dict[str, int], root: Path, val_fraction: float,
                   test_fraction: float, seed: int) -> dict[str, list[str]]:
    """{split: patients}: from splits.json, else seeded and stratified where the counts allow."""
    path = root / SPLITS_FILE
    if path.is_file():
        try:
            given = {s: [str(p) for p in json.loads(path.read_text()).get(s, [])] for s in ("train", "val", "test")}
        except (ValueError, AttributeError) as err:
            raise TaskError(f"{path}: expected {{\"train\": [patients], \"val\": [...], \"test\": [...]}} "
                            f"({err})") from err
        named = sum(given.values(), [])
        twice = sorted({p for p in named if named.count(p) > 1})
        if twice:  # slices of one patient in two splits would score the test on training anatomy
            raise TaskError(f"{path}: patient(s) {twice[:5]} in more than one split")
        unknown = sorted(set(named) - set(patients))
        if unknown:
            raise TaskError(f"{path}: patient(s) {unknown[:5]} have no usable slices (or no folder)")
        return given
    labels = np.asarray([strata[p] for p in patients])
    if min(Counter(labels.tolist()).values()) < 3:  # too few to stratify
        labels = np.zeros(len(patients), np.int64)
    (rest, lrest), (test, _) = stratified_split(patients, labels, test_fraction, seed, root)
    (train, _), (val, _) = stratified_split(rest, lrest, val_fraction / max(1 - test_fraction, 1e-9), seed, root)
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def load(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0,
         progress: bool = True, **_) -> SegmentationData:
    root = Path(root)
    if not root.is_dir():
        raise TaskError(f"{root}: folder missing")
    known = declared_labels(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    pairs, skipped = [], []
    for folder in folders:
        found, left = patient_pairs(folder)
        pairs += found
        skipped += left
    names: dict[int, str] = {}
    usable, present, empty = [], {}, set()
    for pair in tqdm(pairs, desc="checking image and mask pairs", unit="slice", disable=not progress):
        problem, values = check_pair(pair, known)
        if problem:
            skipped.append((_where(pair), problem))
            continue
        usable.append(pair)
        if values == {0}:
            empty.add(pair)
        present.setdefault(pair.patient, set()).update(values)
        if isinstance(pair.slice, str):
            names.update(read_segmentation(pair.mask)[1])
    if not usable:
        raise TaskError(f"{root}: no usable image and mask pairs in {len(folders)} patient folder(s)"
                        + (f"; first problem: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""))
    labels = known or {v: names.get(v, BACKGROUND if v == 0 else str(v))
                       for v in sorted({0} | set().union(*present.values()) | set(names))}
    values = sorted(labels)
    counts = Counter(v for found in present.values() for v in found if v != 0)
    if not counts:
        raise TaskError(f"{root}: every mask is all background: nothing to segment")
    rarest = min(counts, key=lambda v: (counts[v], v))
    strata = {p: int(rarest in found) for p, found in present.items()}
    split = split_patients(sorted(present), strata, root, val_fraction, test_fraction, seed)
    splits = {s: SegmentationSplit([p for p in usable if p.patient in set(split[s])]) for s in ("train", "val", "test")}
    for s in ("train", "test"):
        if not splits[s].items:
            raise TaskError(f"{root}: the {s} split has no patients ({len(present)} patients with usable slices)")
    return SegmentationData(root.name, [labels[v] for v in values], values, splits, str(root), read_image, read_mask,
                            strata, {s: sum(p in empty for p in part.items) for s, part in splits.items()}, skipped)


def write(root: str | Path, cases: Iterable[tuple[str, str, np.ndarray, np.ndarray]], classes: list[str],
          spacing: tuple[float, float, float] = (1.0, 1.0, 5.0)) -> Path:
    """Write patients as NIfTI volume pairs: ``cases`` yields (patient, split, HU volume, label
    volume), each (slices, rows, columns) in display orientation, label values the class numbers;
    ``classes`` their names (background first). Also writes labels.json and splits.json."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    affine = np.diag([*spacing, 1.0])
    for patient, split, hu, labels in cases:
        folder = root / patient
        folder.mkdir(exist_ok=True)
        for name, volume, dtype in (("image", hu, np.int16), ("mask", labels, np.uint8)):
            array = np.ascontiguousarray(volume.transpose(2, 1, 0)[::-1, ::-1, :]).astype(dtype)  # back to RAS+
            nib.save(nib.Nifti1Image(array, affine), folder / f"{name}.nii.gz")
        splits[split].append(patient)
    (root / LABELS_FILE).write_text(json.dumps({str(i): name for i, name in enumerate(classes)}, indent=1))
    (root / SPLITS_FILE).write_text(json.dumps(splits, indent=1))
    return root


FORMAT = TaskFormat(load, write, family="segmentation")
