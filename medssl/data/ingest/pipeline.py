"""One ingestion run: discover inputs, plan series, convert them in parallel, write the store.

Every series (DICOM series, NIfTI file, chunk of an image folder) is one group of the store
writer, so an interrupted run resumes by series. Bad inputs are skipped and listed in
``STORE/ingest_errors.csv`` (run, file, reason; every run appends its rows); the run goes on.
Copies of a DICOM instance (or slice) that were not used are listed in
``STORE/ingest_duplicates.csv`` (run, file, kept, series_uid, instance), appended the same way.
A rerun also takes the files added to an image folder since the last one (see ``image_items``).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..dicom_pixels import AIR_HU, one_line
from ..errors import UnreadableInput
from ..store import SliceStore, SliceStoreWriter, stored_settings
from . import thin
from .dicom import SeriesPlan, drop_duplicate_instances, ignored_copies, order_series, read_header, read_series
from .discover import discover
from .images import read_image
from .nifti import read_volume
from .report import DuplicatesReport, ErrorsReport
from .resample import fit_to_size, to_int16
from .workers import init_worker

ERRORS_FILE = "ingest_errors.csv"
DUPLICATES_FILE = "ingest_duplicates.csv"
SUMMARY_FILE = "ingest_summary.json"
IMAGE_CHUNK = 256


@dataclass(frozen=True)
class Options:
    """How inputs become slices: ``size`` (the square side, pixels), the DICOM ``modalities``
    kept, ``clip`` (low, high) applied to values and recorded in the store, ``thin`` (an SSIM
    threshold above which a slice too like the last kept one is dropped), ``nifti_modality``
    (what NIfTI files hold: the format does not say)."""

    size: int = 256
    modalities: tuple[str, ...] = ("CT",)
    clip: tuple[int, int] | None = None
    thin: float | None = None  # SSIM threshold, None = keep every slice
    nifti_modality: str = "CT"


@dataclass
class Item:
    """One unit of work and one group of the store."""

    kind: str  # dicom | nifti | images
    group: str
    label: str  # what a person reads in listings
    modality: str
    slices: int
    size: tuple[int, int] | None
    payload: object = field(repr=False, default=None)


@dataclass
class Summary:
    store: str = ""
    series_written: int = 0
    series_already_done: int = 0
    slices_written: int = 0
    slices_in_store: int = 0
    slices_dropped_by_thinning: int = 0
    skipped: int = 0  # rows of the errors report: files or series that could not be ingested
    series_skipped: int = 0
    non_image_files_ignored: int = 0
    # copies of DICOM instances or slices already found elsewhere, each listed in one report:
    duplicates_ignored: int = 0  # all of them; those not read are rows of the duplicates report,
    copies_unreadable: int = 0  # those read that could not be: rows of the errors report
    series_of_other_modalities: dict = field(default_factory=dict)
    errors_report: str = ""
    duplicates_report: str = ""

    @property
    def anything_skipped(self) -> bool:
        return bool(self.skipped)


class IngestError(RuntimeError):
    """The run cannot start (no inputs, inputs of incompatible kinds, ...)."""


# --- planning -------------------------------------------------------------------------------
def _header_or_reason(path):
    try:
        return read_header(Path(path)), None
    except UnreadableInput as err:
        return None, err.reason
    except Exception as err:  # a damaged file must not stop the run
        return None, f"unreadable DICOM: {one_line(err)}"


def plan(inputs, options: Options, pool=None, progress=True):
    """Items to ingest, (file, reason) of inputs that cannot be, and what was ignored (its
    ``copies``: rows of the duplicates report for the copies in series not planned)."""
    found = discover(inputs)
    errors = [(str(p), "input not found") for p in found.missing]
    ignored = {"non_image_files": len(found.other), "other_modalities": Counter(), "duplicates": 0,
               "copies": []}
    if found.images and (found.dicom or found.nifti):
        raise IngestError("inputs mix image files (values not HU) with DICOM/NIfTI scans: "
                          "ingest them into separate stores.")
    items: list[Item] = []
    if found.dicom:
        mapper = pool.map if pool else map
        headers = []
        results = mapper(_header_or_reason, map(str, found.dicom), **({"chunksize": 32} if pool else {}))
        for path, (header, reason) in tqdm(zip(found.dicom, results), total=len(found.dicom),
                                           desc="reading DICOM headers", unit="file",
                                           disable=not progress):
            if header is None:
                errors.append((str(path), reason))
            else:
                headers.append(header)
        items += _dicom_items(headers, options, errors, ignored)
    for path in found.nifti:
        items.append(Item("nifti", f"nifti:{path.resolve()}", str(path), options.nifti_modality,
                          0, None, str(path)))
    items += image_items([path for path, _root in found.images])
    return items, errors, ignored


def image_items(files, done: frozenset[str] = frozenset()) -> list[Item]:
    """Chunks of each folder's image files that are not in ``done`` (resolved paths).

    A chunk's group is named by its folder and the digest of its file list, so files added to a
    folder after a run form new groups of their own on the next run.
    """
    by_folder: dict[Path, list[str]] = {}
    for path in map(Path, files):
        if str(path.resolve()) not in done:
            by_folder.setdefault(path.parent, []).append(str(path))
    items = []
    for folder, names in by_folder.items():
        for start in range(0, len(names), IMAGE_CHUNK):
            chunk = names[start:start + IMAGE_CHUNK]
            digest = hashlib.blake2b("\n".join(chunk).encode(), digest_size=8).hexdigest()
            items.append(Item("images", f"images:{folder.resolve()}#{digest}", str(folder), "OT",
                              len(chunk), None, chunk))
    return items


def _skip_stored_images(items, writer: SliceStoreWriter):
    """Items without the image files already in the store; and how many stored groups they held."""
    files = [f for i in items if i.kind == "images" for f in i.payload]
    if not files:
        return items, 0
    stored = writer.written_rows()
    resolved = stored.source.map(lambda s: str(Path(s).resolve()))
    wanted = {str(Path(f).resolve()) for f in files}
    here = resolved.isin(wanted)
    rest = [i for i in items if i.kind != "images"]
    return rest + image_items(files, frozenset(resolved[here])), stored.series_uid[here].nunique()


def _dicom_items(headers, options, errors, ignored):
    headers, copies = drop_duplicate_instances(headers)
    ignored["duplicates"] += copies
    series: dict[str, list[dict]] = {}
    for h in headers:
        series.setdefault(h["series_uid"], []).append(h)
    items = []
    for uid, members in series.items():
        modality = members[0]["modality"]
        unused = [(c, "", uid, h["sop_uid"]) for h in members for c in h["copies"]]
        if modality not in options.modalities:
            ignored["other_modalities"][modality or "unknown"] += 1
            ignored["copies"] += unused
            continue
        if not members[0]["rows"]:
            errors += [(h["file"], f"no image in this {modality} file") for h in members]
            ignored["copies"] += unused
            continue
        try:
            series_plan = order_series(members)
        except UnreadableInput as err:
            errors.append((err.path or str(Path(members[0]["file"]).parent), f"series {uid}: {err.reason}"))
            ignored["copies"] += unused
            continue
        ignored["duplicates"] += series_plan.duplicates
        items.append(Item("dicom", uid, str(Path(members[0]["file"]).parent), modality,
                          len(series_plan.slices), (members[0]["rows"], members[0]["cols"]), series_plan))
    return items


# --- conversion (runs in worker processes) -----------------------------------------------------
def _rows(item: Item, sources, positions, spacing, patient, indices):
    return [{
        "source": src, "patient_id": patient, "series_uid": item.group, "modality": item.modality,
        "slice_index": int(i), "position_mm": pos,
        "spacing_row_mm": spacing[0], "spacing_col_mm": spacing[1],
    } for src, pos, i in zip(sources, positions, indices)]


def _finish(values, fill, options: Options):
    """Resize, thin, round: float (n, H, W) -> int16 slices, kept indices, spacing factor."""
    values, factor = fit_to_size(values, options.size, fill)
    keep = thin.keep_mask(values, options.thin) if options.thin is not None else np.ones(len(values), bool)
    return to_int16(values[keep], options.clip), np.nonzero(keep)[0], factor


def convert(item: Item, options: Options):
    """-> (item, integer slices or None, manifest rows, dropped count, [(file, reason)],
    ([rows of the duplicates report], how many of the errors are copies that could not be read))"""
    try:
        if item.kind == "dicom":
            return _convert_dicom(item, options)
        if item.kind == "nifti":
            return *_convert_nifti(item, options), ([], 0)
        return *_convert_images(item, options), ([], 0)
    except UnreadableInput as err:
        copies = ignored_copies(item.payload, {}, stored=False) if item.kind == "dicom" else []
        return item, None, [], 0, [(err.path or item.label, err.reason)], (copies, 0)


def _convert_dicom(item: Item, options: Options):
    """A stored series' only errors are the copies of its instances that could not be read."""
    plan_: SeriesPlan = item.payload
    unreadable = []  # (file, reason) of copies of an instance that cannot be read
    read_from = {}  # planned file -> the copy read
    try:
        values, sources = read_series(plan_, unreadable, read_from)
    except UnreadableInput as err:
        copies = ignored_copies(plan_, read_from, unreadable, stored=False)
        return (item, None, [], 0, [(err.path or item.label, err.reason)] + unreadable,
                (copies, len(unreadable)))
    fill = AIR_HU if item.modality == "CT" else float(values.min())
    slices, kept, factor = _finish(values, fill, options)
    positions = plan_.positions
    spacing = [s * factor for s in plan_.spacing]
    rows = _rows(item, [sources[i] for i in kept], [positions[i] for i in kept], spacing,
                 plan_.first["patient_id"], kept)
    copies = ignored_copies(plan_, read_from, unreadable)
    return item, slices, rows, len(values) - len(kept), unreadable, (copies, len(unreadable))


def _convert_nifti(item: Item, options: Options):
    """Slices holding NaN or infinite values are skipped (and reported), never filled in."""
    volumes, positions, spacing = read_volume(item.payload)
    parts, rows, errors, dropped = [], [], [], 0
    patient = Path(item.payload).name.split(".nii")[0]
    for t, values in enumerate(volumes):
        source = item.payload if len(volumes) == 1 else f"{item.payload}#t{t}"
        finite = np.isfinite(values).all(axis=(1, 2))
        if not finite.all():
            errors.append((source, f"slices {_index_list(np.flatnonzero(~finite))} of {len(values)} "
                                   "hold NaN or infinite values: not stored"))
        usable = np.flatnonzero(finite)
        if not len(usable):
            continue
        fill = AIR_HU if item.modality == "CT" else float(values[usable].min())
        slices, kept, factor = _finish(values[usable], fill, options)
        kept = usable[kept]
        rows += _rows(item, [source] * len(kept), [positions[i] for i in kept],
                      [s * factor for s in spacing], patient, kept)
        parts.append(slices)
        dropped += len(usable) - len(kept)
    return item, np.concatenate(parts) if parts else None, rows, dropped, errors


def _index_list(indices) -> str:
    """[1, 3, 4, 5, 6] -> "1, 3-6" (runs of three or more as ranges)."""
    runs, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            runs.append(f"{start}-{i}" if i - start >= 2 else ", ".join(map(str, range(start, i + 1))))
            start = None
    return ", ".join(runs)


def _convert_images(item: Item, options: Options):
    parts, rows, errors = [], [], []
    files = item.payload
    for index, path in enumerate(files):
        try:
            values = read_image(path)[None]
        except UnreadableInput as err:
            errors.append((path, err.reason))
            continue
        resized, factor = fit_to_size(values, options.size, float(values.min()))
        parts.append(_rounded(resized, options.clip))
        rows += _rows(item, [path], [np.nan], [np.nan, np.nan], Path(path).parent.name, [index])
    slices = np.concatenate(parts) if parts else None
    return item, slices, rows, 0, errors


def _rounded(values, clip):
    """Float values -> int32, rounded (and clipped); the store's own dtype is checked later."""
    if clip is not None:
        values = np.clip(values, *clip)
    return np.rint(values).astype(np.int32)


def _fitting(slices, rows, dtype):
    """The slices whose values fit the store's dtype, their rows, and (file, reason) of the rest."""
    info = np.iinfo(dtype)
    low, high = slices.min(axis=(1, 2)), slices.max(axis=(1, 2))
    fits = (low >= info.min) & (high <= info.max)
    unfit = [(rows[k]["source"], f"values {low[k]}..{high[k]} do not fit this store's {dtype.name} "
                                 f"slices ({info.min}..{info.max})") for k in np.flatnonzero(~fits)]
    kept = [row for row, fit in zip(rows, fits) if fit]
    return (slices[fits] if kept else None), kept, unfit


def _ordered(pool, fn, items, ahead):
    """Like pool.map, in order, but with at most ``ahead`` items in flight (bounded memory)."""
    queue = deque()
    it = iter(items)
    for item in it:
        queue.append(pool.submit(fn, item) if pool else item)
        if len(queue) >= ahead:
            break
    while queue:
        head = queue.popleft()
        yield head.result() if pool else fn(head)
        nxt = next(it, None)
        if nxt is not None:
            queue.append(pool.submit(fn, nxt) if pool else nxt)


# --- the run -------------------------------------------------------------------------------
def _copies_in_stored_series(done, writer: SliceStoreWriter) -> list:
    """Rows of the duplicates report for the DICOM series stored by an earlier run: the copy
    kept is the one the manifest names."""
    plans = [i.payload for i in done if i.kind == "dicom"]
    plans = [p for p in plans if p.repeated or any(h["copies"] for h in p.headers.values())]
    if not plans:
        return []
    stored = set(writer.written_rows().source.astype(str).str.replace(r"#frame\d+$", "", regex=True))
    rows = []
    for p in plans:
        read_from = {h["file"]: next((f for f in [h["file"], *h["copies"]] if f in stored), None)
                     for h in p.headers.values()}
        rows += ignored_copies(p, {k: v for k, v in read_from.items() if v})
    return rows


def dtype_for(items, out, overwrite: bool) -> str:
    """uint16 for image files (8- and 16-bit values as they are), int16 for scans; a store that
    is resumed keeps its own."""
    earlier = None if overwrite else stored_settings(out)
    if earlier is not None:
        return earlier["dtype"]
    return "uint16" if any(i.kind == "images" for i in items) else "int16"


def units_for(items, options: Options) -> str:
    if any(i.kind == "images" for i in items):
        return "raw"
    modalities = {i.modality for i in items} | set(options.modalities)
    return "HU" if modalities <= {"CT"} else "raw"


def describe_plan(items) -> pd.DataFrame:
    return pd.DataFrame([{"kind": i.kind, "series": i.group, "where": i.label, "modality": i.modality,
                          "slices": i.slices or None, "size": "x".join(map(str, i.size)) if i.size else ""}
                         for i in items])


def ingest(inputs, out, options: Options = Options(), *, workers: int | None = None,
           overwrite: bool = False, progress: bool = True, errors_report: str | Path | None = None,
           dry_run: bool = False, shard_slices: int = 1024):
    """Ingest DICOM series, NIfTI volumes and image folders into a slice store at ``out``.

    Returns (Summary, plan DataFrame, [(file, reason)] of the inputs skipped); with ``dry_run``
    nothing is written. Running the same call again after an interruption finishes the job:
    series already in the store are not converted again.
    """
    from functools import partial

    out = Path(out)
    workers = workers or os.cpu_count() or 1
    pool = (ProcessPoolExecutor(workers, initializer=init_worker, initargs=(os.getpid(),))
            if workers > 1 else None)
    try:
        items, errors, ignored = plan(inputs, options, pool, progress)
        table = describe_plan(items)
        summary = Summary(store=str(out), non_image_files_ignored=ignored["non_image_files"],
                          duplicates_ignored=ignored["duplicates"],
                          series_of_other_modalities=dict(ignored["other_modalities"]))
        if dry_run:
            summary.skipped = len(errors)
            return summary, table, errors
        if not items and not errors:
            raise IngestError(f"no DICOM, NIfTI or image files found in {', '.join(map(str, inputs))}")
        # the modalities read (OT for image files), from the whole plan: a rerun of the same
        # inputs records the same, as resuming demands
        attrs = {"source": "medssl ingest", "modalities": sorted({i.modality for i in items}),
                 "thin_ssim": options.thin}
        writer = SliceStoreWriter(out, options.size, units=units_for(items, options),
                                  clip=options.clip, attrs=attrs, resume=not overwrite,
                                  overwrite=overwrite, shard_slices=shard_slices,
                                  dtype=dtype_for(items, out, overwrite))
        report_path = Path(errors_report) if errors_report else out / ERRORS_FILE
        summary.errors_report = str(report_path)
        summary.duplicates_report = str(out / DUPLICATES_FILE)
        items, images_done = _skip_stored_images(items, writer)
        todo = [i for i in items if i.group not in writer.done_groups]
        summary.series_already_done = len(items) - len(todo) + images_done
        with (ErrorsReport(report_path) as report,
              DuplicatesReport(summary.duplicates_report, run=report.run) as duplicates, writer):
            report.add(errors)
            duplicates.add(ignored["copies"])
            duplicates.add(_copies_in_stored_series(
                [i for i in items if i.group in writer.done_groups], writer))
            bar = tqdm(total=sum(i.slices for i in todo) or None, desc="ingesting", unit="slice",
                       disable=not progress)
            for item, slices, rows, dropped, item_errors, (copies, unreadable) in _ordered(
                    pool, partial(convert, options=options), todo, ahead=2 * workers):
                report.add(item_errors)
                errors += item_errors
                duplicates.add(copies)
                summary.copies_unreadable += unreadable
                if slices is not None:
                    slices, rows, unfit = _fitting(slices, rows, writer.dtype)
                    report.add(unfit)
                    errors += unfit
                if slices is None:
                    summary.series_skipped += 1
                else:
                    writer.add(slices, rows)
                    summary.series_written += 1
                    summary.slices_written += len(slices)
                    summary.slices_dropped_by_thinning += dropped
                bar.update(item.slices or len(rows) + dropped)
            bar.close()
        summary.skipped = len(errors)
        summary.slices_in_store = len(SliceStore(out))
        (out / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=1) + "\n")
        return summary, table, errors
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
