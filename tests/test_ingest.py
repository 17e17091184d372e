import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut

from medssl.data import SliceStore, StoreError
from medssl.data.ingest import IngestError, Options, ingest, pipeline
from medssl.data.phantom import phantom_volume
from medssl.data.synthetic_dicom import write_series

from ingest_support import errors_of, run_ingest

ROOT = Path(__file__).resolve().parents[1]
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_FILES = Path(nib.__file__).parent / "tests" / "data"


def volume(n=6, size=32, seed=0):
    images, _, _ = phantom_volume(seed, 0, n, size, z_range=(0.2, 0.6))
    return images


# --- real files shipped with pydicom ----------------------------------------------------------
def test_ct_file_gives_pydicoms_modality_lut_values_with_padding_as_air(tmp_path):
    source = PYDICOM_FILES / "CT_small.dcm"
    summary, store = run_ingest([source], tmp_path / "s", size=128)
    ds = pydicom.dcmread(source)
    expected = apply_modality_lut(ds.pixel_array, ds)
    expected[ds.pixel_array == ds.PixelPaddingValue] = -1024
    assert store.units == "HU" and len(store) == 1
    np.testing.assert_array_equal(store[0], expected.astype(np.int16))
    row = store.manifest.iloc[0]
    assert row.modality == "CT" and row.source == str(source)
    assert row.spacing_row_mm == pytest.approx(float(ds.PixelSpacing[0]))


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_expb.dcm"])
def test_mr_encodings_decode_to_the_same_values(tmp_path, name):
    reference = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    expected = apply_modality_lut(reference.pixel_array, reference)
    _, store = run_ingest([PYDICOM_FILES / name], tmp_path / "s", size=64, modalities=("MR",))
    assert store.units == "raw"
    np.testing.assert_array_equal(store[0], expected)


def test_truncated_and_non_image_files_are_reported_and_the_run_goes_on(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    for name in ("CT_small.dcm", "MR_truncated.dcm", "test-SR.dcm"):
        shutil.copy(PYDICOM_FILES / name, data / name)
    (data / "notes.xml").write_text("<LidcReadMessage/>")
    (data / "broken.dcm").write_bytes(b"\x00" * 50)
    summary, store = run_ingest([data], tmp_path / "s", size=64, modalities=("CT", "MR", "SR"))
    reasons = {Path(e["file"]).name: e["reason"] for e in errors_of(tmp_path / "s")}
    assert "cannot decode pixel data" in reasons["MR_truncated.dcm"]
    assert "broken.dcm" in reasons
    assert "no image" in reasons["test-SR.dcm"]
    assert summary.non_image_files_ignored == 1  # the XML
    assert summary.anything_skipped and summary.skipped == 3
    assert len(store) == 1 and store.manifest.source[0].endswith("CT_small.dcm")


# --- synthetic series ----------------------------------------------------------------------------
def test_series_grouped_by_uid_and_ordered_by_position(tmp_path):
    a, b = volume(seed=1), volume(n=4, seed=2)
    folder = tmp_path / "mixed"  # two series and an MR in one folder, shuffled names
    write_series(folder, a, series_uid="1.2.3.1", names="shuffled", seed=3)
    write_series(folder, b, series_uid="1.2.3.2", names="shuffled", seed=4, z0=300.0, thickness=-3.0)
    write_series(folder, b, series_uid="1.2.3.3", modality="MR", names="uid")
    summary, store = run_ingest([folder], tmp_path / "s", size=32)
    assert summary.series_of_other_modalities == {"MR": 1}
    m = store.manifest
    assert set(m.series_uid) == {"1.2.3.1", "1.2.3.2"}
    for uid, vol in (("1.2.3.1", a), ("1.2.3.2", b[::-1])):  # b was written top-down
        rows = m.index[m.series_uid == uid]
        assert m.position_mm[rows].is_monotonic_increasing
        np.testing.assert_array_equal(np.stack([store[i] for i in rows]), vol)


def test_folders_do_not_define_series(tmp_path):
    files = write_series(tmp_path / "in" / "one", volume(), series_uid="9.9")
    for f in files[3:]:  # half the series in another folder
        (tmp_path / "in" / "two").mkdir(exist_ok=True)
        f.rename(tmp_path / "in" / "two" / f.name)
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    assert store.manifest.series_uid.nunique() == 1 and len(store) == 6
    np.testing.assert_array_equal(np.stack(list(store)), volume())


def test_instance_number_is_the_fallback_order(tmp_path):
    write_series(tmp_path / "in", volume(), names="shuffled", with_position=False)
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    np.testing.assert_array_equal(np.stack(list(store)), volume())


def test_signed_and_unsigned_pixels_and_rescale_give_the_same_hu(tmp_path):
    hu = volume(n=3)
    write_series(tmp_path / "signed", hu, signed=True, intercept=0.0, series_uid="1.1")
    write_series(tmp_path / "unsigned", hu, signed=False, intercept=-1024.0, series_uid="1.2")
    write_series(tmp_path / "scaled", hu - hu % 2, signed=True, slope=2.0, intercept=-1000.0,
                 series_uid="1.3")
    _, store = run_ingest([tmp_path / "signed", tmp_path / "unsigned", tmp_path / "scaled"],
                          tmp_path / "s", size=32)
    m = store.manifest
    by = {uid: np.stack([store[i] for i in m.index[m.series_uid == uid]]) for uid in ("1.1", "1.2", "1.3")}
    np.testing.assert_array_equal(by["1.1"], hu)
    np.testing.assert_array_equal(by["1.2"], hu)
    np.testing.assert_array_equal(by["1.3"], hu - hu % 2)


@pytest.mark.parametrize("encoding", ["implicit", "big_endian", "rle"])
def test_encodings_round_trip_exactly(tmp_path, encoding):
    hu = volume(n=3)
    write_series(tmp_path / "in", hu, encoding=encoding)
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    np.testing.assert_array_equal(np.stack(list(store)), hu)


def test_padding_value_becomes_air(tmp_path):
    hu = volume(n=2)
    hu[:, :3, :] = -3024  # outside the reconstruction circle, stored as -2000 with intercept -1024
    write_series(tmp_path / "in", hu, padding=-2000)
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    got = np.stack(list(store))
    assert (got[:, :3, :] == -1024).all()
    np.testing.assert_array_equal(got[:, 3:], hu[:, 3:])


def test_broken_series_are_skipped_with_reasons(tmp_path):
    write_series(tmp_path / "gap", volume(), series_uid="2.1", positions=[0, 2.5, 5, 10, 12.5, 15])
    write_series(tmp_path / "dup", volume(n=3), series_uid="2.2", positions=[0, 2.5, 2.5])
    write_series(tmp_path / "mixed", volume(n=2), series_uid="2.3")
    write_series(tmp_path / "mixed", volume(n=1, size=16), series_uid="2.3", z0=50.0)
    write_series(tmp_path / "good", volume(n=2), series_uid="2.4")
    summary, store = run_ingest([tmp_path], tmp_path / "s", size=32)
    reasons = " | ".join(e["reason"] for e in errors_of(tmp_path / "s"))
    assert "missing slices: gap of 5.00 mm" in reasons
    assert "duplicate slice position" in reasons
    assert "mixed sizes" in reasons
    assert set(store.manifest.series_uid) == {"2.4"}
    assert summary.skipped == 3


def test_resampling_to_the_store_size(tmp_path):
    hu = np.full((2, 24, 48), -1024, np.int16)
    hu[:, 8:16, 16:32] = 1000
    write_series(tmp_path / "in", hu, spacing=0.5)
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32)
    got = store[0]
    assert got.shape == (32, 32)
    assert (got[:6] == -1024).all() and (got[-6:] == -1024).all()  # padded to square with air
    assert got[16, 16] == 1000
    assert store.manifest.spacing_row_mm[0] == pytest.approx(0.5 * 48 / 32)
    _, native = run_ingest([tmp_path / "in"], tmp_path / "n", size=48)
    assert native[0][24, 24] == 1000 and (native[0][:12] == -1024).all()


def test_clip_range_is_applied_and_recorded(tmp_path):
    write_series(tmp_path / "in", volume(n=2))
    _, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32, clip=(-1000, 400))
    got = np.stack(list(store))
    assert store.clip == (-1000, 400) and got.min() >= -1000 and got.max() <= 400
    np.testing.assert_array_equal(got, np.clip(volume(n=2), -1000, 400))


def test_redundancy_thinning_drops_near_duplicates(tmp_path):
    base = volume(n=4)
    rng = np.random.default_rng(0)
    repeated = np.repeat(base, 3, axis=0) + rng.integers(-3, 4, (12, 32, 32)).astype(np.int16)
    write_series(tmp_path / "in", repeated)
    summary, store = run_ingest([tmp_path / "in"], tmp_path / "s", size=32, thin=0.95)
    assert summary.slices_dropped_by_thinning == 8 and len(store) == 4
    assert store.manifest.slice_index.tolist() == [0, 3, 6, 9]
    keep_all, _ = run_ingest([tmp_path / "in"], tmp_path / "k", size=32, thin=1.0)
    assert keep_all.slices_dropped_by_thinning == 0


# --- NIfTI ------------------------------------------------------------------------------------------
def test_nifti_orientations_give_the_same_slices(tmp_path):
    vol = np.zeros((20, 20, 5), np.float32)  # RAS+: x to the right, y anterior, z superior
    vol[15:, 12:, :] = 500  # a block at the patient's right-anterior
    vol[..., 4] += 100  # the top slice is different
    ras = nib.Nifti1Image(vol, np.diag([0.8, 0.9, 2.5, 1]))
    lps_affine = np.diag([-0.8, -0.9, 2.5, 1])
    lps = nib.Nifti1Image(vol[::-1, ::-1].copy(), lps_affine)  # same anatomy, stored flipped
    nib.save(ras, tmp_path / "ras.nii.gz")
    nib.save(lps, tmp_path / "lps.nii")
    _, a = run_ingest([tmp_path / "ras.nii.gz"], tmp_path / "a", size=20)
    _, b = run_ingest([tmp_path / "lps.nii"], tmp_path / "b", size=20)
    assert len(a) == 5
    for i in range(5):
        np.testing.assert_array_equal(a[i], b[i])
    top = a[4].astype(int) - 100
    assert top[:8, :5].min() == 500 and top[8:].max() == 0  # anterior up, patient's right on the left
    assert a.manifest.position_mm.is_monotonic_increasing
    assert a.manifest.spacing_row_mm[0] == pytest.approx(0.9 * 20 / 20)


def test_nifti_scaling_is_applied(tmp_path):
    raw = np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, tmp_path / "scaled.nii")
    _, store = run_ingest([tmp_path / "scaled.nii"], tmp_path / "s", size=4)
    assert store[0].min() == -1024 + 2 * raw[..., 0].min()
    assert store[0].max() == -1024 + 2 * raw[..., 0].max()


def test_nibabel_example_volume(tmp_path):
    source = NIBABEL_FILES / "anatomical.nii"  # 33 x 41 x 25, stored LAS
    volume = nib.as_closest_canonical(nib.load(source)).get_fdata()
    side = max(volume.shape[:2])  # padded to a square, no resizing
    _, store = run_ingest([source], tmp_path / "s", size=side, nifti_modality="MR")
    assert len(store) == volume.shape[2] and store.units == "raw"
    k = volume.shape[2] // 2
    slice_ = np.flip(volume[:, :, k].T, (0, 1))  # anterior up, patient's right on the left
    expected = np.full((side, side), volume.min())
    top, left = (side - slice_.shape[0]) // 2, (side - slice_.shape[1]) // 2
    expected[top:top + slice_.shape[0], left:left + slice_.shape[1]] = slice_
    np.testing.assert_array_equal(store[k], np.rint(expected))


# --- image folders ----------------------------------------------------------------------------------
def test_image_folders_keep_their_values_and_say_so(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    grey8 = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    grey16 = np.random.default_rng(1).integers(0, 4096, (32, 32)).astype(np.uint16)
    Image.fromarray(grey8).save(folder / "a.png")
    Image.fromarray(grey16).save(folder / "b.png")
    Image.fromarray(grey16).save(folder / "c.tif")
    Image.fromarray(np.stack([grey8] * 3, -1)).save(folder / "d.jpg", quality=100)
    (folder / "e.png").write_bytes(b"not a png")
    summary, store = run_ingest([folder], tmp_path / "s", size=32)
    assert store.units == "raw" and len(store) == 4
    np.testing.assert_array_equal(store[0], grey8)
    np.testing.assert_array_equal(store[1], grey16)
    np.testing.assert_array_equal(store[2], grey16)
    assert np.abs(store[3].astype(int) - grey8).mean() < 3  # JPEG, converted to grey
    assert [Path(e["file"]).name for e in errors_of(tmp_path / "s")] == ["e.png"]


def test_images_cannot_be_mixed_with_scans(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", tmp_path / "ct.dcm")
    with pytest.raises(IngestError, match="separate stores"):
        ingest([tmp_path], tmp_path / "s", workers=1, progress=False)


# --- resume, dry run, command line -------------------------------------------------------------------
def make_tree(root):
    for k in range(5):
        write_series(root / f"patient{k}" / "study" / "series", volume(n=3, seed=k),
                     series_uid=f"5.{k}", patient_id=f"P{k}")


def test_interrupted_run_resumes_without_duplicates(tmp_path, monkeypatch):
    make_tree(tmp_path / "in")
    real = pipeline.convert
    seen = []

    def flaky(item, options):
        seen.append(item.group)
        if len(seen) == 4:
            raise KeyboardInterrupt
        return real(item, options)

    monkeypatch.setattr(pipeline, "convert", flaky)
    with pytest.raises(KeyboardInterrupt):
        ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=1, progress=False)
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(tmp_path / "s")
    monkeypatch.setattr(pipeline, "convert", real)
    summary, _, _ = ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=2,
                           progress=False)
    assert summary.series_already_done == 3 and summary.series_written == 2
    store = SliceStore(tmp_path / "s")
    _, reference = run_ingest([tmp_path / "in"], tmp_path / "r", size=32)
    assert len(store) == len(reference) == 15
    assert sorted(store.manifest.source) == sorted(reference.manifest.source)
    for uid in reference.manifest.series_uid.unique():
        got = [store[i] for i in store.manifest.index[store.manifest.series_uid == uid]]
        want = [reference[i] for i in reference.manifest.index[reference.manifest.series_uid == uid]]
        np.testing.assert_array_equal(np.stack(got), np.stack(want))


KILLED_INGEST = """
import os, signal, sys
from medssl.data.ingest import Options, ingest, pipeline
real = pipeline.convert
done = []
def convert(item, options):
    done.append(item)
    if len(done) == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(item, options)
pipeline.convert = convert
ingest([sys.argv[1]], sys.argv[2], Options(size=32), workers=1, progress=False, shard_slices=3)
"""


@pytest.mark.slow
def test_killed_run_finishes_when_the_command_is_run_again(tmp_path):
    make_tree(tmp_path / "in")
    killed = subprocess.run([sys.executable, "-c", KILLED_INGEST, str(tmp_path / "in"),
                             str(tmp_path / "s")], cwd=ROOT, timeout=300)
    assert killed.returncode == -9
    with pytest.raises(StoreError, match="incomplete"):
        SliceStore(tmp_path / "s")
    cmd = [sys.executable, str(ROOT / "Pre-Training" / "preprocess.py"), str(tmp_path / "in"),
           "--out", str(tmp_path / "s"), "--size", "32", "--workers", "1"]
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "3 series were already done" in again.stdout
    store = SliceStore(tmp_path / "s")
    assert len(store) == 15 and store.manifest.source.is_unique
    twice = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "5 series were already done" in twice.stdout and len(SliceStore(tmp_path / "s")) == 15


@pytest.mark.slow
def test_dry_run_lists_series_and_writes_nothing(tmp_path):
    make_tree(tmp_path / "in")
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", tmp_path / "in" / "mr.dcm")
    proc = subprocess.run([sys.executable, str(ROOT / "Pre-Training" / "preprocess.py"),
                           str(tmp_path / "in"), "--dry-run", "--workers", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "5 series, 15 slices would be ingested" in proc.stdout
    assert "5.3" in proc.stdout and "MR: 1" in proc.stdout
    assert not any(p.name == "store.json" for p in tmp_path.rglob("*"))


@pytest.mark.slow
def test_command_exit_status_says_whether_anything_was_skipped(tmp_path):
    make_tree(tmp_path / "in")
    (tmp_path / "in" / "junk.dcm").write_bytes(b"\x01" * 300)
    proc = subprocess.run([sys.executable, str(ROOT / "Pre-Training" / "preprocess.py"),
                           str(tmp_path / "in"), "--out", str(tmp_path / "s"), "--size", "32"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "skipped    1 inputs" in proc.stdout and "ingest_errors.csv" in proc.stdout
    assert len(SliceStore(tmp_path / "s")) == 15
    missing = subprocess.run([sys.executable, str(ROOT / "Pre-Training" / "preprocess.py"),
                              str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert missing.returncode == 1 and str(tmp_path / "nowhere") in missing.stderr  # a typo: not a store of 0
    assert not (tmp_path / "t").exists()
