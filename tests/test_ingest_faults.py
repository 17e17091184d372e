"""Ingestion and the slice store facing bad input, reruns and kills."""
import csv
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medssl.data import SliceStore, StoreError
from medssl.data.ingest import Options, ingest

from ingest_support import errors_of, run_ingest

ROOT = Path(__file__).resolve().parents[1]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path, side=15000):
    """A tiny PNG whose header declares side x side 8-bit grey pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # the first rows only: PIL stops at the header
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows)
                     + png_chunk(b"IEND", b""))


# --- images ----------------------------------------------------------------------------------
def test_decompression_bomb_is_skipped_and_named(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    grey = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(grey).save(folder / "a.png")
    write_png_bomb(folder / "bomb.png")
    assert (folder / "bomb.png").stat().st_size < 100_000
    summary, store = run_ingest([folder], tmp_path / "s", size=16)
    assert len(store) == 1
    np.testing.assert_array_equal(store[0], grey)
    [error] = errors_of(tmp_path / "s")
    assert Path(error["file"]).name == "bomb.png"
    assert f"{15000 * 15000} pixels" in error["reason"] and "decompression bomb" in error["reason"]
    assert summary.skipped == 1


# --- reruns -----------------------------------------------------------------------------------
def volume(n=3, size=32, seed=0):
    from medssl.data.phantom import phantom_volume

    images, _, _ = phantom_volume(seed, 0, n, size, z_range=(0.2, 0.6))
    return images


def write_patients(root, seeds):
    from medssl.data.synthetic_dicom import write_series

    for k in seeds:
        write_series(root / f"patient{k}", volume(seed=k), series_uid=f"5.{k}", patient_id=f"P{k}")


def test_failed_rerun_keeps_the_complete_store_readable(tmp_path, monkeypatch):
    from medssl.data.ingest import pipeline

    write_patients(tmp_path / "in", range(3))
    _, before = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    original = [before[i] for i in range(len(before))]
    write_patients(tmp_path / "in", range(3, 6))  # new series arrive, then the rerun fails
    real, calls = pipeline.convert, []

    def failing(item, options):
        calls.append(item.group)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(item, options)

    monkeypatch.setattr(pipeline, "convert", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=1, progress=False,
               shard_slices=1)
    store = SliceStore(tmp_path / "s")
    assert len(store) == len(original) == 9
    for i, slice_ in enumerate(original):
        np.testing.assert_array_equal(store[i], slice_)
    assert store.manifest.equals(before.manifest)
    monkeypatch.setattr(pipeline, "convert", real)
    summary, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    assert summary.series_already_done == 4 and summary.series_written == 2  # one new series was kept
    assert len(store) == 18 and store.manifest.source.is_unique


# --- non-finite values -----------------------------------------------------------------------
def test_nifti_slices_with_nan_or_inf_are_skipped_and_named(tmp_path):
    import nibabel as nib

    vol = np.random.default_rng(0).integers(-1000, 1000, (8, 8, 6)).astype(np.float32)
    vol[2, 3, 1] = np.nan
    vol[:, :, 3] = np.nan
    vol[0, 0, 4] = -np.inf
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "holes.nii")
    nib.save(nib.Nifti1Image(np.full((8, 8, 2), np.nan, np.float32), np.eye(4)), tmp_path / "void.nii")
    summary, store = run_ingest([tmp_path / "holes.nii", tmp_path / "void.nii"], tmp_path / "s", size=8)
    assert store.manifest.slice_index.tolist() == [0, 2, 5]
    for i, k in enumerate([0, 2, 5]):  # untouched slices, exactly
        np.testing.assert_array_equal(store[i], np.flip(vol[:, :, k].T, (0, 1)))
    reasons = {Path(e["file"]).name: e["reason"] for e in errors_of(tmp_path / "s")}
    assert "slices 1, 3, 4 of 6" in reasons["holes.nii"] and "NaN" in reasons["holes.nii"]
    assert "slices 0, 1 of 2" in reasons["void.nii"]
    assert summary.skipped == 2 and summary.series_skipped == 1


def test_float_image_with_nan_is_skipped_and_named(tmp_path):
    folder = tmp_path / "tifs"
    folder.mkdir()
    values = np.arange(64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values).save(folder / "a.tif")
    values[4, 4] = np.nan
    Image.fromarray(values).save(folder / "b.tif")
    _, store = run_ingest([folder], tmp_path / "s", size=8)
    assert store.manifest.source.map(lambda s: Path(s).name).tolist() == ["a.tif"]
    [error] = errors_of(tmp_path / "s")
    assert Path(error["file"]).name == "b.tif" and "NaN" in error["reason"]


def test_rerun_picks_up_new_images_and_the_error_log_keeps_every_run(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    images = {name: rng.integers(0, 256, (8, 8), dtype=np.uint8) for name in "abcde"}
    for name in "ace":
        Image.fromarray(images[name]).save(folder / f"{name}.png")
    (folder / "x.png").write_bytes(b"not a png")
    _, first = run_ingest([folder], tmp_path / "s", size=8)
    assert len(first) == 3
    for name in "bd":  # new files sort between the old ones
        Image.fromarray(images[name]).save(folder / f"{name}.png")
    summary, store = run_ingest([folder], tmp_path / "s", size=8)
    assert summary.series_written == 1 and summary.slices_written == 2
    names = store.manifest.source.map(lambda s: Path(s).stem).tolist()
    assert sorted(names) == list("abcde")
    for i, name in enumerate(names):
        np.testing.assert_array_equal(store[i], images[name])
    again, store = run_ingest([str(folder) + "/"], tmp_path / "s", size=8)  # spelt otherwise
    assert again.series_written == 0 and len(store) == 5
    errors = errors_of(tmp_path / "s")
    assert [Path(e["file"]).name for e in errors] == ["x.png"] * 3
    assert len({e["run"] for e in errors}) == 3


def test_errors_report_of_an_older_run_keeps_its_rows(tmp_path):
    from medssl.data.ingest.report import ErrorsReport

    path = tmp_path / "ingest_errors.csv"
    path.write_text("file,reason\nold.png,unreadable image\n")
    with ErrorsReport(path) as report:
        report.add([("new.png", "image holds NaN")])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["file"]) for r in rows] == [("", "old.png"), (report.run, "new.png")]


# --- 16-bit images ----------------------------------------------------------------------------
def test_16_bit_png_keeps_values_up_to_65535(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    grey16 = np.random.default_rng(5).integers(0, 65536, (16, 16)).astype(np.uint16)
    grey16[0, :2] = [0, 65535]
    Image.fromarray(grey16).save(folder / "a.png")
    grey8 = np.random.default_rng(6).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(grey8).save(folder / "b.png")
    assert Image.open(folder / "a.png").mode == "I;16"
    summary, store = run_ingest([folder], tmp_path / "s", size=16)
    assert not summary.skipped and store.units == "raw" and store.dtype == np.uint16
    np.testing.assert_array_equal(store[0], grey16)
    np.testing.assert_array_equal(store[1], grey8)
    assert store[0].dtype == np.uint16
    shard = np.load(tmp_path / "s" / "shards" / "00000.npy")  # plain NumPy, no offset to know
    np.testing.assert_array_equal(shard[0], grey16)


def test_int16_image_store_of_an_older_run_names_images_that_do_not_fit(tmp_path, monkeypatch):
    from medssl.data.ingest import pipeline

    folder = tmp_path / "pngs"
    folder.mkdir()
    grey8 = np.random.default_rng(6).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(grey8).save(folder / "a.png")
    monkeypatch.setattr(pipeline, "dtype_for", lambda *args: "int16")  # as stores were made before
    run_ingest([folder], tmp_path / "s", size=16)
    monkeypatch.undo()
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(folder / "b.png")
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(folder / "c.png")
    summary, store = run_ingest([folder], tmp_path / "s", size=16)
    assert store.dtype == np.int16 and len(store) == 2
    assert store.manifest.source.map(lambda s: Path(s).name).tolist() == ["a.png", "c.png"]
    [error] = errors_of(tmp_path / "s")
    assert Path(error["file"]).name == "b.png" and "int16" in error["reason"]


# --- a killed run -----------------------------------------------------------------------------
SLOW_INGEST = """
import os, sys, time
from medssl.data.ingest import Options, ingest, pipeline
real = pipeline.convert
def convert(item, options):
    if os.environ.get("SLOW") and item.group not in ("5.0", "5.1"):
        time.sleep(120)
    return real(item, options)
pipeline.convert = convert
ingest([sys.argv[1]], sys.argv[2], Options(size=32), workers=2, progress=False, shard_slices=3)
"""


def children_of(pid):
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.slow
def test_workers_end_with_a_killed_parent_and_the_rerun_completes(tmp_path):
    write_patients(tmp_path / "in", range(5))
    cmd = [sys.executable, "-c", SLOW_INGEST, str(tmp_path / "in"), str(tmp_path / "s")]
    parent = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "SLOW": "1"})
    workers = []
    try:
        # two series written, the workers busy with the next ones
        assert wait_for(lambda: (tmp_path / "s" / "shards" / "00001.json").exists(), 120)
        workers = children_of(parent.pid)
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not any(map(alive, workers)), 5), "workers outlived their parent"
    finally:
        parent.kill()
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(tmp_path / "s")
    summary, _, _ = ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=2,
                           progress=False, shard_slices=3)  # the same call again
    assert summary.series_already_done == 2 and summary.series_written == 3
    store = SliceStore(tmp_path / "s")
    assert len(store) == 15 and store.manifest.source.is_unique
    assert sorted(store.manifest.series_uid.unique()) == [f"5.{k}" for k in range(5)]
    for k in range(5):
        rows = store.manifest.index[store.manifest.series_uid == f"5.{k}"]
        np.testing.assert_array_equal(np.stack([store[i] for i in rows]), volume(seed=k))


def test_an_empty_dicom_file_is_named_as_empty(tmp_path):
    from medssl.data.errors import UnreadableInput
    from medssl.data.ingest.dicom import read_header

    (tmp_path / "slice.dcm").write_bytes(b"")
    with pytest.raises(UnreadableInput, match=r"^empty file \(0 bytes\)$"):
        read_header(tmp_path / "slice.dcm")
