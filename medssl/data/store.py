"""Slice store: lossless integer slices in memory-mappable ``.npy`` shards plus a manifest.

Slices are int16 (HU and other scan values) or, in stores made from image files, uint16 (the
values of 8- and 16-bit images as they are); ``store.json`` says which.

Layout of a store directory::

    store.json        written last and atomically; its presence marks the store complete
    manifest.csv      one row per slice, in store order
    shards/00000.npy  int16 (or uint16) array (n, H, W), memory-mapped on read
    shards/00000.csv  the manifest rows of that shard (kept so an interrupted write resumes)
    shards/00000.json shard record (slices, bytes, sha256, sample_blake2b); written last,
                      marks the shard done

Opening a store checks each shard's size and a hash of a few sampled blocks (cheap: catches
truncation and most edits in place); ``verify()`` hashes every byte.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..checksums import file_digest
from ..files import atomic_write_bytes

FORMAT = "medssl-slice-store"
VERSION = 1
META_FILE = "store.json"
PENDING_FILE = "writing.json"
MANIFEST_FILE = "manifest.csv"
SHARD_DIR = "shards"
DTYPES = {"int16": np.dtype("<i2"), "uint16": np.dtype("<u2")}
DTYPE = DTYPES["int16"]

STRING_COLUMNS = ("source", "patient_id", "series_uid", "modality")
NUMBER_COLUMNS = ("slice_index", "position_mm", "spacing_row_mm", "spacing_col_mm")
MANIFEST_COLUMNS = STRING_COLUMNS + NUMBER_COLUMNS
UNITS = ("HU", "raw")
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 8, 4096  # blocks of each shard hashed at write, checked on open


class StoreError(RuntimeError):
    """A slice store is missing, incomplete or damaged."""


def _sample_digest(f, size: int) -> str:
    """blake2b of SAMPLE_BLOCKS blocks spread evenly over a file of ``size`` bytes (first and last
    included): files of up to SAMPLE_BLOCKS blocks are read whole."""
    digest = hashlib.blake2b(digest_size=16)
    last = max(size - SAMPLE_BLOCK_BYTES, 0)
    for offset in sorted({last * k // (SAMPLE_BLOCKS - 1) for k in range(SAMPLE_BLOCKS)}):
        f.seek(offset)
        digest.update(f.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def _read_manifest(path: Path, nrows: int | None = None) -> pd.DataFrame:
    return pd.read_csv(
        path,
        nrows=nrows,
        dtype={c: str for c in STRING_COLUMNS},
        keep_default_na=False,
        na_values={c: [""] for c in NUMBER_COLUMNS},
    )


class SliceStore:
    """Read access to a complete slice store.

    ``store[i]`` is an array (H, W) of ``store.dtype`` (int16, or uint16 in stores of image
    files); ``store.manifest`` a DataFrame, one row per slice.
    Shards are memory-mapped lazily in each process, so a store can be handed to many
    DataLoader workers (the maps are not pickled).

    Opening checks every shard's size and sampled blocks (``quick_check=False`` skips the
    blocks, e.g. to run :meth:`verify` on a store known to be damaged).
    """

    def __init__(self, path: str | os.PathLike, quick_check: bool = True):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no slice store here (directory not found).")
        if not meta_path.is_file() and not (self.path / PENDING_FILE).is_file():
            raise StoreError(
                f"{self.path}: not a slice store (no {META_FILE}). Make one from DICOM, NIfTI or "
                f"image folders with: medssl ingest {self.path} --out STORE (or python Pre-Training/preprocess.py)"
            )
        if not meta_path.is_file():
            raise StoreError(
                f"{self.path}: incomplete slice store ({META_FILE} is missing): its writing was "
                "interrupted or never finished. Run the command that wrote it again to resume it."
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise StoreError(f"{meta_path}: unreadable store metadata ({err}).") from err
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StoreError(
                f"{meta_path}: not a {FORMAT} version {VERSION} (found {meta.get('format')!r} "
                f"version {meta.get('version')!r})."
            )
        if meta.get("dtype", "int16") not in DTYPES:
            raise StoreError(f"{meta_path}: unknown slice dtype {meta.get('dtype')!r}; this medssl "
                             f"reads {', '.join(DTYPES)}.")
        self.meta = meta
        self.dtype = DTYPES[meta.get("dtype", "int16")]
        self.height, self.width = (int(v) for v in meta["size"])
        self._shards = meta["shards"]
        for shard in self._shards:
            self._check_shard_file(shard, sample=quick_check)
        counts = [int(s["slices"]) for s in self._shards]
        self._ends = np.cumsum(counts, dtype=np.int64)
        self._len = int(self._ends[-1]) if counts else 0
        if self._len != int(meta["slices"]):
            raise StoreError(f"{meta_path}: shard slice counts add up to {self._len}, "
                             f"the store says {meta['slices']}.")
        self._manifest: pd.DataFrame | None = None
        self._maps: dict[int, np.ndarray] = {}

    def _check_shard_file(self, shard: Mapping, sample: bool = True) -> None:
        file = self.path / shard["file"]
        if not file.is_file():
            raise StoreError(f"{file}: shard missing from the slice store at {self.path}.")
        size = file.stat().st_size
        if size != int(shard["bytes"]):
            raise StoreError(
                f"{file}: shard is damaged: {size} bytes on disk, {shard['bytes']} expected "
                "(truncated or overwritten). Re-create the store from its sources."
            )
        if sample and "sample_blake2b" in shard:  # stores written before lack it
            with open(file, "rb") as f:
                found = _sample_digest(f, size)
            if found != shard["sample_blake2b"]:
                raise StoreError(
                    f"{file}: shard is damaged: the checksum of its sampled blocks differs from the "
                    "one recorded when it was written (edited in place?). Re-create the store "
                    "from its sources."
                )

    # --- the read API -------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def units(self) -> str:
        """"HU" for Hounsfield units, "raw" for stored values that are not HU."""
        return self.meta["units"]

    @property
    def clip(self) -> tuple[int, int] | None:
        clip = self.meta.get("clip")
        return tuple(clip) if clip else None

    @property
    def attrs(self) -> dict:
        return self.meta.get("attrs", {})

    @property
    def manifest(self) -> pd.DataFrame:
        if self._manifest is None:
            file = self.path / MANIFEST_FILE
            if not file.is_file():
                raise StoreError(f"{file}: manifest missing from the slice store.")
            # nrows: while a rerun finishes, the manifest may already list the slices it added
            manifest = _read_manifest(file, nrows=self._len)
            if len(manifest) != self._len:
                raise StoreError(f"{file}: manifest has {len(manifest)} rows, the store has "
                                 f"{self._len} slices.")
            self._manifest = manifest
        return self._manifest

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row in shard) of slice ``index``."""
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"slice {index} out of range for a store of {self._len} slices")
        shard = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[shard - 1]) if shard else 0
        return shard, index - start

    def shard(self, number: int) -> np.ndarray:
        """The memory-mapped array (n, H, W) of one shard."""
        array = self._maps.get(number)
        if array is None:
            file = self.path / self._shards[number]["file"]
            try:
                array = np.load(file, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise StoreError(f"{file}: cannot memory-map shard ({err}).") from err
            expected = (int(self._shards[number]["slices"]), self.height, self.width)
            if array.shape != expected or array.dtype != self.dtype:
                raise StoreError(f"{file}: shard holds {array.dtype}{array.shape}, "
                                 f"expected {self.dtype.name}{expected}.")
            self._maps[number] = array
        return array

    def __getitem__(self, index: int) -> np.ndarray:
        shard, row = self.locate(int(index))
        return np.array(self.shard(shard)[row])

    def __iter__(self):
        for i in range(self._len):
            yield self[i]

    def verify(self, progress: bool = True) -> None:
        """Check every byte of every shard against the sha256 recorded when it was written;
        one StoreError names all the damaged shards."""
        from tqdm.auto import tqdm

        damaged = []
        for shard in tqdm(self._shards, desc="verify shards", unit="shard", disable=not progress):
            file = self.path / shard["file"]
            try:
                self._check_shard_file(shard, sample=False)
            except StoreError as err:
                damaged.append(str(err))
                continue
            if file_digest(file, "sha256") != shard["sha256"]:
                damaged.append(f"{file}: shard is damaged: checksum differs from the one recorded "
                               "when it was written.")
        if damaged:
            raise StoreError(f"{len(damaged)} of {len(self._shards)} shards damaged; re-create the "
                             "store from its sources:\n" + "\n".join(damaged))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def __repr__(self) -> str:
        return (f"SliceStore({str(self.path)!r}, slices={self._len}, "
                f"size={self.height}x{self.width}, units={self.units})")


def stored_settings(path: str | os.PathLike) -> dict | None:
    """The settings a store at ``path`` was written (or started) with; None if there is none."""
    path = Path(path)
    for file in (path / META_FILE, path / PENDING_FILE):
        if file.is_file():
            return {"dtype": "int16", **json.loads(file.read_text())}  # older stores: int16
    return None


class SliceStoreWriter:
    """Writes a slice store; only :meth:`close` makes it readable as complete.

    Slices arrive in groups (for example one series) through :meth:`add`; a group is never
    split across shards, so after a crash every finished shard holds whole groups and
    ``SliceStoreWriter(path, ..., resume=True)`` continues where the last finished shard ended
    (see :attr:`done_groups`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: int | tuple[int, int],
        *,
        units: str = "HU",
        clip: tuple[int, int] | None = None,
        shard_slices: int = 1024,
        attrs: Mapping | None = None,
        group_column: str = "series_uid",
        resume: bool = False,
        overwrite: bool = False,
        dtype: str = "int16",
    ):
        if units not in UNITS:
            raise ValueError(f"units must be one of {UNITS}, not {units!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, not {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.path = Path(path)
        self.size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        self.units = units
        self.clip = [int(clip[0]), int(clip[1])] if clip is not None else None
        self.shard_slices = int(shard_slices)
        self.attrs = dict(attrs or {})
        self.group_column = group_column
        self._buffer: list[np.ndarray] = []
        self._rows: list[pd.DataFrame] = []
        self._buffered = 0
        self._shards: list[dict] = []
        self.done_groups: set[str] = set()
        self._prepare(resume, overwrite)

    def _prepare(self, resume: bool, overwrite: bool) -> None:
        shard_dir = self.path / SHARD_DIR
        if self.path.exists() and any(self.path.iterdir()):
            if overwrite:
                shutil.rmtree(self.path)
            elif not resume:
                state = "a complete" if (self.path / META_FILE).exists() else "an unfinished"
                raise StoreError(f"{self.path}: already holds {state} slice store; resume it or "
                                 "choose overwrite (or another path).")
        shard_dir.mkdir(parents=True, exist_ok=True)
        settings = {"units": self.units, "size": list(self.size), "clip": self.clip,
                    "attrs": self.attrs, "dtype": self.dtype.name}
        pending = self.path / PENDING_FILE
        earlier = stored_settings(self.path)
        if earlier is not None:
            before = {k: earlier.get(k) for k in settings}
            if before != json.loads(json.dumps(settings)):
                raise StoreError(f"{self.path}: cannot resume: the store was started with "
                                 f"{before}, this write asks for {settings}.")
        # A complete store keeps its store.json and manifest (it stays readable) until close()
        # replaces them; new shards only ever come after the ones it lists.
        atomic_write_bytes(pending, json.dumps(settings).encode())
        for record_file in sorted(shard_dir.glob("*.json")):
            record = json.loads(record_file.read_text())
            if tuple(record["size"]) != self.size:
                raise StoreError(f"{record_file}: shard slices are {record['size']}, "
                                 f"this write asks for {list(self.size)}; cannot resume.")
            self._shards.append(record)
            rows = _read_manifest(shard_dir / record["rows"])
            self.done_groups.update(rows[self.group_column].astype(str))
        done = {r["file"] for r in self._shards} | {f"{SHARD_DIR}/{r['rows']}" for r in self._shards}
        for leftover in shard_dir.iterdir():
            rel = f"{SHARD_DIR}/{leftover.name}"
            if leftover.suffix != ".json" and rel not in done:
                leftover.unlink()

    @property
    def slices_written(self) -> int:
        return sum(int(s["slices"]) for s in self._shards) + self._buffered

    def written_rows(self) -> pd.DataFrame:
        """The manifest rows of the finished shards, in store order."""
        shard_dir = self.path / SHARD_DIR
        parts = [_read_manifest(shard_dir / s["rows"]) for s in self._shards]
        return (pd.concat(parts, ignore_index=True) if parts
                else pd.DataFrame(columns=list(MANIFEST_COLUMNS)))

    def add(self, slices: np.ndarray, rows: pd.DataFrame | Iterable[Mapping]) -> None:
        """Append one group of slices (n, H, W) with its n manifest rows."""
        slices = np.asarray(slices)
        if slices.ndim == 2:
            slices = slices[None]
        if slices.shape[1:] != self.size:
            raise ValueError(f"slices are {slices.shape[1:]}, the store holds {self.size}")
        if slices.dtype != self.dtype:
            if not np.issubdtype(slices.dtype, np.integer):
                raise TypeError(f"slices must be integer ({self.dtype.name}), got {slices.dtype}")
            info = np.iinfo(self.dtype)
            if slices.size and (slices.min() < info.min or slices.max() > info.max):
                raise ValueError(f"slice values outside the {self.dtype.name} range")
            slices = slices.astype(self.dtype)
        rows = pd.DataFrame(rows).reset_index(drop=True)
        missing = [c for c in MANIFEST_COLUMNS if c not in rows.columns]
        if missing:
            raise ValueError(f"manifest rows lack columns {missing}")
        if len(rows) != len(slices):
            raise ValueError(f"{len(slices)} slices but {len(rows)} manifest rows")
        self._buffer.append(slices)
        self._rows.append(rows)
        self._buffered += len(slices)
        if self._buffered >= self.shard_slices:
            self.flush()

    def flush(self) -> None:
        """Write the buffered groups as one finished shard."""
        if not self._buffered:
            return
        number = len(self._shards)
        name = f"{number:05d}"
        shard_dir = self.path / SHARD_DIR
        data = np.concatenate(self._buffer)
        raw = io.BytesIO()
        np.save(raw, data, allow_pickle=False)
        payload = raw.getvalue()
        atomic_write_bytes(shard_dir / f"{name}.npy", payload)
        rows = pd.concat(self._rows, ignore_index=True)
        atomic_write_bytes(shard_dir / f"{name}.csv", rows.to_csv(index=False).encode())
        record = {
            "file": f"{SHARD_DIR}/{name}.npy",
            "rows": f"{name}.csv",
            "slices": int(len(data)),
            "size": list(self.size),
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "sample_blake2b": _sample_digest(io.BytesIO(payload), len(payload)),
        }
        atomic_write_bytes(shard_dir / f"{name}.json", json.dumps(record).encode())
        self._shards.append(record)
        self.done_groups.update(rows[self.group_column].astype(str))
        self._buffer, self._rows, self._buffered = [], [], 0

    def close(self) -> SliceStore:
        """Flush, write manifest and metadata, and return the complete store.

        The manifest goes first: it only appends rows to the one a complete store had, which
        reads its own rows from the start of it, so the store is readable at every moment."""
        self.flush()
        manifest = self.written_rows()
        atomic_write_bytes(self.path / MANIFEST_FILE, manifest.to_csv(index=False).encode())
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype.name,
            "units": self.units,
            "size": list(self.size),
            "clip": self.clip,
            "slices": int(len(manifest)),
            "shards": [{k: s[k] for k in ("file", "slices", "bytes", "sha256", "sample_blake2b")
                        if k in s} for s in self._shards],
            "attrs": self.attrs,
        }
        atomic_write_bytes(self.path / META_FILE, json.dumps(meta, indent=1).encode())
        (self.path / PENDING_FILE).unlink(missing_ok=True)
        return SliceStore(self.path)

    def __enter__(self) -> "SliceStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep every whole group already added; the store stays incomplete, resumable
            self.flush()
