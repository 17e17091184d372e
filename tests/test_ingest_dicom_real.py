"""DICOM ingestion against what real archives hold: every file pydicom ships, enhanced
multi-frame CT, series split over several files, and the same data given more than once."""
import csv
import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from medssl.data import SliceStore
from medssl.data.ingest import Options, ingest
from medssl.data.synthetic_dicom import write_series

ROOT = Path(__file__).resolve().parents[1]
PYDICOM_DATA = Path(pydicom.data.__file__).parent
CT_SMALL = PYDICOM_DATA / "test_files" / "CT_small.dcm"
NON_IMAGE_SUFFIXES = {".xml", ".txt", ".md", ".json", ".gz"}


def preprocess_main():
    spec = importlib.util.spec_from_file_location("preprocess", ROOT / "Pre-Training" / "preprocess.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def errors_of(store_path):
    """The errors report's rows of the latest run."""
    with open(Path(store_path) / "ingest_errors.csv") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r["run"] == rows[-1]["run"]] if rows else []


def duplicates_of(store_path):
    """The duplicates report's rows of the latest run: (file, kept, series_uid, instance)."""
    with open(Path(store_path) / "ingest_duplicates.csv") as f:
        rows = list(csv.DictReader(f))
    return [(r["file"], r["kept"], r["series_uid"], r["instance"]) for r in rows
            if r["run"] == rows[-1]["run"]] if rows else []


def listed_once(store_path):
    """Each copy the summary counts is a row of the duplicates report or, unreadable, of the
    errors report."""
    summary = json.loads((Path(store_path) / "ingest_summary.json").read_text())
    return summary["duplicates_ignored"] == len(duplicates_of(store_path)) + summary["copies_unreadable"]


def counting_decodes(monkeypatch):
    """The files whose pixels ingestion decodes (in this process: workers=1), in order."""
    from medssl.data.ingest import dicom

    decoded, real = [], dicom.read_pixels

    def read_pixels(path, *args, **kwargs):
        decoded.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dicom, "read_pixels", read_pixels)
    return decoded


def run_ingest(inputs, out, **options):
    summary, _, errors = ingest(inputs, out, Options(**options), workers=1, progress=False)
    return summary, SliceStore(out), errors


def store_digest(path):
    """Hash of every file of a store (slices, manifest; not the reports of the run)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).rglob("*"))
            if p.is_file() and p.name not in ("ingest_summary.json", "ingest_errors.csv",
                                              "ingest_duplicates.csv")}


def pydicom_files():
    files = pydicom.data.get_testdata_files()
    for extra in ("get_charset_files", "get_palette_files"):
        if hasattr(pydicom.data, extra):
            files += getattr(pydicom.data, extra)()
    return [Path(f) for f in files if Path(f).is_file()]


def copy_pydicom_tree(root):
    """Every file pydicom ships, below ``root`` under its path inside pydicom's data folder."""
    copies = {}
    for source in pydicom_files():
        target = root / source.relative_to(PYDICOM_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        copies[target] = source
    return copies


def read_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True, **kwargs)


def decodable_ct(path):
    """True for a CT file with grey pixel data that pydicom decodes."""
    try:
        ds = read_quietly(path)
        if ds.get("Modality") != "CT" or "PixelData" not in ds or ds.get("SamplesPerPixel", 1) != 1:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.pixel_array
        return True
    except Exception:
        return False


def other_modality(path):
    """True for a DICOM header pydicom reads, of a modality other than CT (or none)."""
    try:
        ds = read_quietly(path, stop_before_pixels=True)
        return bool(ds.get("SeriesInstanceUID")) and ds.get("Modality") != "CT"
    except Exception:
        return False


def truncated_ct(path):
    """CT_small as a series of its own, cut in the middle of its pixel data."""
    ds = pydicom.dcmread(CT_SMALL)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 4000])


# --- 1. every file pydicom ships ------------------------------------------------------------------
def test_every_pydicom_file_is_stored_skipped_with_a_reason_or_ignored(tmp_path, capsys):
    tree = tmp_path / "in"
    copy_pydicom_tree(tree)
    truncated_ct(tree / "truncated_ct.dcm")
    (tree / "annotations.xml").write_text("<LidcReadMessage/>")
    out = tmp_path / "store"
    main = preprocess_main()
    argv = [str(tree), "--out", str(out), "--size", "64", "--workers", "1"]
    assert main(argv) == 2  # finished, some inputs skipped
    store = SliceStore(out)
    manifest = store.manifest
    errors = errors_of(out)
    named = {Path(e["file"]) for e in errors}
    reasons = {Path(e["file"]).name: e["reason"] for e in errors}
    stored = set(manifest.source)
    files = sorted(p for p in tree.rglob("*") if p.is_file())

    assert manifest.source.is_unique and len(store) == len(manifest)
    assert "NumberOfFrames" in reasons["badVR.dcm"]  # the header field and its value are named
    assert "cannot decode pixel data" in reasons["truncated_ct.dcm"]
    for path in files:
        if path.suffix.lower() in NON_IMAGE_SUFFIXES:
            assert path not in named and str(path) not in stored
        elif decodable_ct(path):
            series = read_quietly(path, stop_before_pixels=True).SeriesInstanceUID
            if str(path) not in stored:  # only a whole series may be refused, and it says why
                why = [e["reason"] for e in errors if series in e["reason"]]
                assert why and all(w.split(": ", 1)[1].startswith(("missing slices", "duplicate slice",
                                                                   "slices of different orientations"))
                                   for w in why), (path, why)
        else:
            assert path in named or other_modality(path), f"{path} is neither stored, named nor ignored"
    for row in errors:
        assert row["reason"] and "\n" not in row["reason"]
    kept_ct = [p for p in files if decodable_ct(p) and str(p) in stored]
    assert {"CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"} <= {p.name for p in kept_ct}
    ds = pydicom.dcmread(tree / "test_files" / "CT_small.dcm")
    expected = apply_modality_lut(ds.pixel_array, ds)
    expected[ds.pixel_array == ds.PixelPaddingValue] = -1024
    row = manifest.index[manifest.source == str(tree / "test_files" / "CT_small.dcm")][0]
    resized = SliceStore(out)[row]
    assert resized.shape == (64, 64) and abs(float(resized.mean()) - float(expected.mean())) < 20
    assert listed_once(out)

    before = store_digest(out)
    capsys.readouterr()
    assert main(argv) == 2
    assert "series were already done" in capsys.readouterr().out
    assert store_digest(out) == before  # same shards and manifest, no duplicates
    assert listed_once(out)
    assert [(e["file"], e["reason"]) for e in errors_of(out)] == [(e["file"], e["reason"]) for e in errors]


def test_missing_decoder_is_named_with_what_to_install(tmp_path):
    decoder = get_decoder(JPEGLSLossless)
    removed = [p for p in decoder.available_plugins]
    for label in removed:
        decoder.remove_plugin(label)
    try:
        summary, _, errors = ingest([PYDICOM_DATA / "test_files" / "MR_small_jpeg_ls_lossless.dcm"],
                                    tmp_path / "s", Options(size=64, modalities=("MR",)),
                                    workers=1, progress=False)
    finally:
        for label in removed:
            module = {"gdcm": "gdcm", "pylibjpeg": "pylibjpeg", "pyjpegls": "pyjpegls"}[label]
            decoder.add_plugin(label, (f"pydicom.pixels.decoders.{module}", "_decode_frame"))
    assert decoder.available_plugins  # restored for the other tests
    [(file, reason)] = errors
    assert file.endswith("MR_small_jpeg_ls_lossless.dcm")
    assert "compressed with JPEG-LS Lossless" in reason and "install" in reason
    assert "pylibjpeg-libjpeg" in reason and summary.series_skipped == 1


def test_bad_header_field_is_a_named_skip_and_the_rest_is_ingested(tmp_path):
    good = write_series(tmp_path / "in" / "good", np.full((3, 16, 16), 40, np.int16), series_uid="1.1")
    bad = write_series(tmp_path / "in" / "bad", np.full((1, 16, 16), 40, np.int16), series_uid="1.2")[0]
    instance_number = b"\x20\x00\x13\x00IS\x02\x001 "  # (0020,0013) IS "1"
    assert instance_number in bad.read_bytes()
    bad.write_bytes(bad.read_bytes().replace(instance_number, instance_number[:-1] + b"x"))
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=16)
    assert len(store) == len(good)
    [(file, reason)] = errors
    assert file == str(bad) and "InstanceNumber" in reason and "1x" in reason


# --- 2. enhanced multi-frame CT ----------------------------------------------------------------------
def enhanced_ct(path, z, frame_order, *, series_uid=None, sop_uid=None, spacing=0.66, step_hu=10):
    """An Enhanced CT file built from CT_small's pixels: the slice at z[j] holds CT_small's HU plus
    ``step_hu * j`` (through its own rescale intercept); frames stored in ``frame_order``."""
    source = pydicom.dcmread(CT_SMALL)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", "ENHANCED"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), series_uid or generate_uid()
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = source.Rows, source.Columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.NumberOfFrames = len(frame_order)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [spacing, spacing]
    shared.PixelMeasuresSequence[0].SliceThickness = 2.5
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for j in frame_order:
        frame = Dataset()
        frame.PlanePositionSequence = Sequence([Dataset()])
        frame.PlanePositionSequence[0].ImagePositionPatient = [-42.0, -42.0, z[j]]
        frame.PixelValueTransformationSequence = Sequence([Dataset()])
        transform = frame.PixelValueTransformationSequence[0]
        transform.RescaleIntercept = float(source.RescaleIntercept) + step_hu * j
        transform.RescaleSlope, transform.RescaleType = 1.0, "HU"
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    stored = source.pixel_array.astype("<i2")
    ds.PixelData = np.stack([stored] * len(frame_order)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def ct_small_hu():
    source = pydicom.dcmread(CT_SMALL)
    return apply_modality_lut(source.pixel_array, source)


def test_enhanced_ct_frames_are_ordered_by_position_with_per_frame_rescale(tmp_path):
    z = [-20.0, -17.5, -15.0, -12.5, -10.0]
    order = [3, 0, 4, 1, 2]  # frames stored shuffled
    path = tmp_path / "enhanced.dcm"
    enhanced_ct(path, z, order, spacing=0.66)
    _, store, errors = run_ingest([path], tmp_path / "s", size=128)
    assert not errors and len(store) == len(z)
    m = store.manifest
    assert m.position_mm.tolist() == pytest.approx(z)
    assert m.spacing_row_mm.tolist() == pytest.approx([0.66] * len(z))
    assert m.source.tolist() == [f"{path}#frame{order.index(j)}" for j in range(len(z))]
    hu = ct_small_hu()
    for j in range(len(z)):
        np.testing.assert_array_equal(store[j], (hu + 10 * j).astype(np.int16))


# --- 3. series over several multi-frame files ------------------------------------------------------
def test_series_over_several_multiframe_files_is_one_volume(tmp_path):
    z = [0.0, 2.5, 5.0, 7.5]
    uid = generate_uid()
    enhanced_ct(tmp_path / "in" / "b.dcm", z, [2, 3], series_uid=uid)  # the upper half first
    enhanced_ct(tmp_path / "in" / "a.dcm", z, [1, 0], series_uid=uid)
    _, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert not errors and store.manifest.position_mm.tolist() == pytest.approx(z)
    hu = ct_small_hu()
    np.testing.assert_array_equal(np.stack(list(store)), np.stack([hu + 10 * j for j in range(4)]))


def test_bad_multiframe_file_is_named_not_its_folder(tmp_path):
    z = [0.0, 2.5, 5.0, 7.5]
    uid = generate_uid()
    enhanced_ct(tmp_path / "in" / "a.dcm", z, [0, 1], series_uid=uid)
    enhanced_ct(tmp_path / "in" / "b.dcm", z, [2, 3], series_uid=uid)
    bad = tmp_path / "in" / "b.dcm"
    bad.write_bytes(bad.read_bytes()[:-5000])  # pixel data cut short
    enhanced_ct(tmp_path / "in" / "other.dcm", z, [0, 1, 2, 3])  # another series, fine
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert [file for file, _ in errors] == [str(bad)]
    assert "cannot decode pixel data" in errors[0][1] and uid in errors[0][1]
    assert set(store.manifest.source.str.split("#").str[0]) == {str(tmp_path / "in" / "other.dcm")}


def test_copies_of_a_multiframe_file_are_one_series(tmp_path):
    z = [0.0, 2.5, 5.0]
    enhanced_ct(tmp_path / "in" / "one" / "x.dcm", z, [2, 0, 1])
    shutil.copy(tmp_path / "in" / "one" / "x.dcm", tmp_path / "in" / "x-copy.dcm")
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert not errors and len(store) == 3 and summary.duplicates_ignored == 1
    assert store.manifest.position_mm.tolist() == pytest.approx(z)
    [(file, kept, _, _)] = duplicates_of(tmp_path / "s")
    assert {file, kept} == {str(tmp_path / "in" / "one" / "x.dcm"), str(tmp_path / "in" / "x-copy.dcm")}
    assert set(store.manifest.source.str.split("#").str[0]) == {kept}


def test_same_frames_under_another_uid_are_one_series(tmp_path):
    z = [0.0, 2.5, 5.0]
    uid = generate_uid()
    enhanced_ct(tmp_path / "in" / "a.dcm", z, [0, 1, 2], series_uid=uid)
    enhanced_ct(tmp_path / "in" / "b.dcm", z, [2, 1, 0], series_uid=uid)  # same content, new UID
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert not errors and len(store) == 3 and summary.duplicates_ignored == 3
    repeated = duplicates_of(tmp_path / "s")
    assert sorted(file for file, *_ in repeated) == [f"{tmp_path / 'in' / 'b.dcm'}#frame{k}" for k in range(3)]
    assert sorted(kept for _, kept, *_ in repeated) == sorted(store.manifest.source)  # a.dcm's frames
    assert all(uid_ == uid and what.startswith("slice at ") for _, _, uid_, what in repeated)
    hu = ct_small_hu()
    np.testing.assert_array_equal(np.stack(list(store)), np.stack([hu + 10 * j for j in range(3)]))


def test_different_frames_at_one_position_name_both_files(tmp_path):
    z = [0.0, 2.5, 5.0]
    uid = generate_uid()
    enhanced_ct(tmp_path / "in" / "a.dcm", z, [0, 1, 2], series_uid=uid)
    enhanced_ct(tmp_path / "in" / "b.dcm", z, [1], series_uid=uid, step_hu=7)  # other values
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    [(file, reason)] = errors
    assert file == str(tmp_path / "in" / "b.dcm")
    assert "duplicate slice position" in reason and "a.dcm" in reason and "b.dcm" in reason
    assert len(store) == 0


def test_damaged_copy_of_an_instance_falls_back_to_the_good_copy(tmp_path):
    files = write_series(tmp_path / "b", np.full((3, 16, 16), 30, np.int16), series_uid="3.1")
    (tmp_path / "a").mkdir()
    damaged = tmp_path / "a" / files[1].name  # walked first
    damaged.write_bytes(files[1].read_bytes()[:-100])
    summary, store, errors = run_ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "s", size=16)
    assert [file for file, _ in errors] == [str(damaged)]  # listed, though another copy was used
    assert len(store) == 3 and summary.duplicates_ignored == 1 and summary.copies_unreadable == 1
    assert store.manifest.source.tolist() == list(map(str, files))
    assert (np.stack(list(store)) == 30).all()
    assert duplicates_of(tmp_path / "s") == []  # the damaged copy is a row of the errors report only


def ct_small_series(folder, n, *, spacing=5.0):
    """CT_small as a series of its own: ``n`` instances (IM1.dcm ...), ``spacing`` mm apart."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, files = generate_uid(), []
    for k in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + k * spacing]
        files.append(folder / f"IM{k + 1}.dcm")
        ds.save_as(files[-1])
    return files


@pytest.mark.parametrize("truncated_first", [True, False], ids=["truncated-first", "good-first"])
def test_unreadable_copy_of_an_instance_is_reported_and_the_manifest_names_the_good_one(
        tmp_path, capsys, monkeypatch, truncated_first):
    """One instance in two files, a good copy and one cut in half (header whole, pixel data cut).
    The copies are read in reading order until one decodes: the slice comes from the good copy
    either way. Truncated first: it was read and failed, so it is a row of the errors report (exit
    status 2). Good first: the truncated copy is never read, so it is an ignored copy, a row of
    the duplicates report (exit status 0). Each copy is a row of one report, never both."""
    series = ct_small_series(tmp_path / "in" / "2-series", 3)
    copy = tmp_path / "in" / "1-copies" / "IM2.dcm"  # walked before the series' own folder
    copy.parent.mkdir()
    shutil.copy(series[1], copy)
    truncated, good = (copy, series[1]) if truncated_first else (series[1], copy)
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    assert pydicom.dcmread(truncated, stop_before_pixels=True).SOPInstanceUID  # the header reads
    sop = str(pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID)
    decoded = counting_decodes(monkeypatch)

    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert len(store) == 3 and summary.series_written == 1 and summary.series_skipped == 0
    assert store.manifest.source.tolist() == [str(series[0]), str(good), str(series[2])]
    np.testing.assert_array_equal(store[1], store[0])  # CT_small's pixels, like the others
    assert [(e["file"], e["reason"]) for e in errors_of(tmp_path / "s")] == errors
    assert summary.duplicates_ignored == 1 and listed_once(tmp_path / "s")
    written = json.loads((tmp_path / "s" / "ingest_summary.json").read_text())
    assert written["errors_report"] == str(tmp_path / "s" / "ingest_errors.csv")
    assert written["duplicates_report"] == str(tmp_path / "s" / "ingest_duplicates.csv")
    if truncated_first:
        assert decoded == list(map(str, [series[0], truncated, good, series[2]]))
        [(file, reason)] = errors
        assert file == str(truncated) and "cannot decode pixel data" in reason and str(good) in reason
        assert duplicates_of(tmp_path / "s") == []
        assert summary.copies_unreadable == 1 and summary.skipped == 1  # listed: exit status 2
    else:
        assert decoded == list(map(str, [series[0], good, series[2]]))  # the truncated one: never
        assert errors == [] and summary.copies_unreadable == 0 and not summary.anything_skipped
        assert duplicates_of(tmp_path / "s") == [(str(truncated), str(good), store.manifest.series_uid[0], sop)]

    capsys.readouterr()
    out = tmp_path / "t"
    status = preprocess_main()([str(tmp_path / "in"), "--out", str(out), "--size", "128", "--workers", "1"])
    printed = capsys.readouterr().out
    found = "ignored    1 copies of DICOM files or slices already found"
    if truncated_first:
        assert status == 2 and f"{found} (1 unreadable: in {out / 'ingest_errors.csv'})\n" in printed
    else:
        assert status == 0 and f"{found}: listed in {out / 'ingest_duplicates.csv'}\n" in printed
        assert "unreadable: in" not in printed and "\nskipped" not in printed
    assert SliceStore(out).manifest.source.tolist() == store.manifest.source.tolist()


def test_instance_with_no_readable_copy_skips_its_series_and_names_every_copy(tmp_path, capsys):
    series = ct_small_series(tmp_path / "in" / "2-series", 3)
    copies = tmp_path / "in" / "1-copies"
    copies.mkdir()
    for k in (1, 2):
        shutil.copy(series[k], copies / series[k].name)
    for path in (copies / "IM2.dcm", series[1]):
        path.write_bytes(path.read_bytes()[:20000])
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=128)
    assert len(store) == 0 and summary.series_skipped == 1
    assert [file for file, _ in errors] == [str(copies / "IM2.dcm"), str(series[1])]  # the first read, its copy
    assert "series" in errors[0][1] and "skipped" in errors[0][1]
    assert "cannot decode pixel data" in errors[1][1] and "no copy of it can be read" in errors[1][1]
    # IM3 is never read (its series stops at IM2): its second copy is listed, nothing kept
    sop = str(pydicom.dcmread(series[2], stop_before_pixels=True).SOPInstanceUID)
    uid = str(pydicom.dcmread(series[2], stop_before_pixels=True).SeriesInstanceUID)
    assert duplicates_of(tmp_path / "s") == [(str(series[2]), "", uid, sop)]
    assert summary.duplicates_ignored == 2 and summary.copies_unreadable == 1 and listed_once(tmp_path / "s")

    capsys.readouterr()
    out = tmp_path / "t"
    assert preprocess_main()([str(tmp_path / "in"), "--out", str(out), "--size", "128", "--workers", "1"]) == 2
    assert (f"ignored    2 copies of DICOM files or slices already found: 1 listed in "
            f"{out / 'ingest_duplicates.csv'} (1 unreadable: in {out / 'ingest_errors.csv'})\n"
            ) in capsys.readouterr().out


def test_series_given_twice_is_read_once_and_every_ignored_copy_is_listed(tmp_path, capsys, monkeypatch):
    """An archive given twice: each instance is decoded once, from its first copy; the second
    copies are never read, each a row of the duplicates report; not an error (exit status 0)."""
    first = ct_small_series(tmp_path / "in" / "a", 3)
    shutil.copytree(tmp_path / "in" / "a", tmp_path / "in" / "b")
    second = [tmp_path / "in" / "b" / f.name for f in first]
    decoded = counting_decodes(monkeypatch)
    out = tmp_path / "s"
    argv = [str(tmp_path / "in"), "--out", str(out), "--size", "64", "--workers", "1"]
    assert preprocess_main()(argv) == 0
    assert decoded == list(map(str, first))  # each instance once, from its first copy
    printed = capsys.readouterr().out
    assert (f"ignored    3 copies of DICOM files or slices already found: listed in "
            f"{out / 'ingest_duplicates.csv'}\n") in printed
    assert "unreadable: in" not in printed and "\nskipped" not in printed
    store = SliceStore(out)
    assert store.manifest.source.tolist() == list(map(str, first))
    uid = store.manifest.series_uid[0]
    sops = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in first]
    listed = [(str(b), str(a), uid, sop) for a, b, sop in zip(first, second, sops)]
    assert duplicates_of(out) == listed and errors_of(out) == [] and listed_once(out)
    assert not json.loads((out / "ingest_summary.json").read_text())["skipped"]

    decoded.clear()  # run again: nothing to do, nothing decoded, the copies listed again
    assert preprocess_main()(argv) == 0
    assert decoded == [] and "(1 series were already done)" in capsys.readouterr().out
    assert duplicates_of(out) == listed and listed_once(out)
    with open(out / "ingest_duplicates.csv") as f:
        assert len({r["run"] for r in csv.DictReader(f)}) == 2  # one run stamp per run, appended


# --- 7. the same input given more than once ----------------------------------------------------
def test_same_file_twice_and_folder_with_one_of_its_files(tmp_path):
    files = write_series(tmp_path / "in", np.full((4, 16, 16), 50, np.int16), series_uid="4.1")
    (tmp_path / "link.dcm").symlink_to(files[2])
    inputs = [files[0], files[0], tmp_path / "in", files[3], tmp_path / "link.dcm"]
    summary, store, errors = run_ingest(inputs, tmp_path / "s", size=16)
    assert not errors and len(store) == 4 and store.manifest.source.is_unique
    assert summary.duplicates_ignored == 0  # the same file, not a copy


def test_copy_of_an_instance_in_another_folder_is_ignored_and_counted(tmp_path, capsys):
    files = write_series(tmp_path / "in" / "a", np.full((4, 16, 16), 50, np.int16), series_uid="4.2")
    (tmp_path / "in" / "b").mkdir()
    shutil.copy(files[1], tmp_path / "in" / "b" / "again.dcm")
    summary, store, errors = run_ingest([tmp_path / "in"], tmp_path / "s", size=16)
    assert not errors and len(store) == 4 and summary.duplicates_ignored == 1
    assert not summary.anything_skipped
    capsys.readouterr()
    assert preprocess_main()([str(tmp_path / "in"), "--out", str(tmp_path / "t"), "--size", "16",
                              "--workers", "1"]) == 0
    assert "ignored    1 copies" in capsys.readouterr().out


def test_nifti_and_images_given_twice_are_ingested_once(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    os.symlink(tmp_path / "v.nii.gz", tmp_path / "alias.nii.gz")
    _, store, _ = run_ingest([tmp_path / "v.nii.gz", tmp_path, tmp_path / "alias.nii.gz"],
                             tmp_path / "s", size=8)
    assert len(store) == 3
    from PIL import Image

    folder = tmp_path / "pngs"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 8), k, np.uint8)).save(folder / f"{k}.png")
    _, images, _ = run_ingest([folder / "1.png", folder, folder / "1.png"], tmp_path / "i", size=8)
    assert len(images) == 3 and images.manifest.source.is_unique
