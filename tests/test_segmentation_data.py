"""The segmentation task format (``masks``): NIfTI volume pairs (every NIfTI file nibabel ships),
slice pairs, DICOM-SEG (pydicom's own SEG files, and one highdicom writes over a DICOM series),
bad pairs named and left out, splits by patient, nested patient subsets."""
import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest
import torch
from PIL import Image

from medssl.data.synthetic_dicom import write_series
from medssl.downstream.datamodule import SegmentationSlices, TaskDataModule
from medssl.downstream.formats import FORMATS, family
from medssl.downstream.formats.masks import read_segmentation, read_volume
from medssl.downstream.phantom_tasks import SEGMENTATION_CLASSES, segmentation_cases
from medssl.downstream.task_data import SegmentationData
from medssl.downstream.tasks import SkippedFilesWarning, TaskError, load_task

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def load(root, **options) -> SegmentationData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedFilesWarning)
        return load_task("masks", root, progress=False, **options)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg") / "segmentation"
    cases = list(segmentation_cases(seed=3, patients=8, slices=4, size=32, progress=False))
    FORMATS["masks"].write(root, cases, list(SEGMENTATION_CLASSES))
    return root


def test_the_phantom_task_reads_back_as_written_split_by_patient(phantom):
    cases = {p: (split, hu, labels) for p, split, hu, labels in
             segmentation_cases(seed=3, patients=8, slices=4, size=32, progress=False)}
    task = load(phantom)
    assert family("masks") == "segmentation" and task.classes == list(SEGMENTATION_CLASSES)
    patients = {s: set(task.splits[s].patients) for s in task.splits}
    assert not (patients["train"] & patients["test"]) and not (patients["train"] & patients["val"])
    assert patients == {s: {p for p, (split, _, _) in cases.items() if split == s} for s in task.splits}
    for index, pair in enumerate(task.splits["train"].items):
        _, hu, labels = cases[pair.patient]
        assert np.array_equal(task.mask("train", index), labels[pair.slice])  # display orientation kept
        image = task.image("train", index)
        assert image.shape == (32, 32) and 0 <= image.min() and image.max() <= 1
        brighter = hu[pair.slice] > hu[pair.slice].mean()
        assert image[brighter].mean() > image[~brighter].mean()
    assert all(count == 0 for count in task.empty_masks.values())
    assert "all background" in task.summary()


def test_every_nifti_file_nibabel_ships_is_a_label_map_or_named(tmp_path):
    files = sorted(NIBABEL_DATA.glob("*.nii")) + sorted(NIBABEL_DATA.glob("*.nii.gz"))
    assert len(files) >= 8
    read, named = [], []
    for file in files:
        try:
            volume = read_volume(str(file))
        except Exception as err:  # every failure is UnreadableInput naming the file
            assert str(file) in str(err) and type(err).__name__ == "UnreadableInput"
            named.append(file.name)
            continue
        assert volume.ndim == 3
        read.append(file.name)
        root = tmp_path / file.name.replace(".", "_")
        for patient in ("a", "b", "c"):
            (root / patient).mkdir(parents=True)
            shutil.copy(file, root / patient / f"image{''.join(file.suffixes)}")
            shutil.copy(file, root / patient / f"mask{''.join(file.suffixes)}")
        try:
            task = load(root, val_fraction=0.0, test_fraction=0.34)
        except TaskError as err:  # no slice of it is a label map
            assert str(root) in str(err) and ("no usable" in str(err) or "all background" in str(err))
            continue
        reasons = [why for _, why in task.skipped]
        assert sum(len(s) for s in task.splits.values()) + len(reasons) == 3 * volume.shape[0]
        assert all("not whole numbers" in why or "negative" in why for why in reasons)
        masks = np.stack([task.mask("train", i) for i in range(len(task.splits["train"]))])
        assert masks.min() >= 0 and masks.max() < len(task.classes)
        if file.name == "standard.nii.gz":
            assert not reasons and task.values == sorted(np.unique(nib.load(file).dataobj).astype(int).tolist())
    assert "standard.nii.gz" in read and "example4d.nii.gz" in named  # 3-D read, 4-D named


def test_pydicoms_seg_files_read_with_their_segment_names():
    for name in ("liver_1frame.dcm", "liver_expb_1frame.dcm"):
        maps, names = read_segmentation(pydicom.data.get_testdata_file(name))
        assert names == {1: "Liver"}
        liver = [uid for uid, m in maps.items() if m.any()]
        assert len(liver) == 1 and maps[liver[0]].shape == (512, 512) and set(np.unique(maps[liver[0]])) == {0, 1}


def _segmented_patient(folder: Path, masks: np.ndarray) -> None:
    """A DICOM series with a DICOM-SEG over it, written by highdicom."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    files = write_series(folder / "images", np.full(masks.shape, 40, np.int16))
    sources = [pydicom.dcmread(f) for f in files]
    for source in sources:
        source.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
        for tag in ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName"):
            setattr(source, tag, source.get(tag, ""))
    segments = [hd.seg.SegmentDescription(segment_number=i + 1, segment_label=label,
                                          segmented_property_category=codes.SCT.Organ, segmented_property_type=kind,
                                          algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
                for i, (label, kind) in enumerate([("liver", codes.SCT.Liver), ("spleen", codes.SCT.Spleen)])]
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=masks,
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=segments,
                              series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
                              instance_number=1, manufacturer="medssl", manufacturer_model_name="tests",
                              software_versions="0", device_serial_number="0")
    (folder / "masks").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg.save_as(folder / "masks" / "segmentation.dcm")


def test_a_dicom_series_with_its_dicom_seg_pairs_by_sop_instance(tmp_path):
    masks = np.zeros((3, 24, 24), np.uint8)
    masks[1, 4:10, 4:10], masks[2, 12:20, 14:18] = 1, 2
    for patient in ("p1", "p2", "p3"):
        _segmented_patient(tmp_path / patient, masks)
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["p1", "p2"], "test": ["p3"]}))
    task = load(tmp_path)
    assert task.classes == ["background", "liver", "spleen"]
    assert len(task.splits["train"]) == 6 and task.empty_masks["train"] == 2
    found = sorted((np.count_nonzero(task.mask("train", i)), int(task.mask("train", i).max())) for i in range(6))
    assert found == [(0, 0), (0, 0), (32, 2), (32, 2), (36, 1), (36, 1)]  # 6x6 liver, 8x4 spleen (class 2)
    (tmp_path / "p3" / "images" / "IM00002.dcm").unlink()  # the image a frame segments is missing
    task = load(tmp_path)
    assert any("not in images/" in reason for _, reason in task.skipped)


def _png_patient(folder: Path, masks: dict[str, np.ndarray], image_size=(16, 16)):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for stem, mask in masks.items():
        Image.fromarray(np.full(image_size, 100, np.uint8)).save(folder / "images" / f"{stem}.png")
        if mask is not None:
            Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def test_bad_pairs_are_named_and_left_out_the_rest_used(tmp_path):
    good = np.zeros((16, 16), np.uint8)
    good[4:8, 4:8] = 1
    for patient in ("p1", "p2", "p3", "p4"):
        _png_patient(tmp_path / patient, {"s1": good, "s2": good})
    (tmp_path / "labels.json").write_text(json.dumps({"1": "lesion"}))
    bad = tmp_path / "p1"
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(bad / "masks" / "s2.png")  # size differs
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "p2" / "masks" / "s2.png")  # unknown label
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p3" / "masks" / "s2.png")  # colour
    Image.fromarray(np.full((16, 16), 100, np.uint8)).save(tmp_path / "p4" / "images" / "s3.png")  # no mask
    (tmp_path / "p4" / "images" / "s1.png").write_bytes((tmp_path / "p4" / "images" / "s1.png").read_bytes()[:40])
    np.save(tmp_path / "p4" / "masks" / "s9.npy", good)  # no image
    with pytest.warns(SkippedFilesWarning):
        task = load_task("masks", tmp_path, progress=False, val_fraction=0.0, test_fraction=0.25)
    reasons = {Path(file.split(" (")[0]).relative_to(tmp_path).as_posix(): why for file, why in task.skipped}
    assert "16x16, its mask 12x16" in reasons["p1/masks/s2.png"]
    assert "[7] not in labels.json" in reasons["p2/masks/s2.png"]
    assert "RGB picture" in reasons["p3/masks/s2.png"]
    assert "no mask" in reasons["p4/images/s3.png"] and "no image" in reasons["p4/masks/s9.npy"]
    assert "unreadable" in reasons["p4/masks/s1.png"] or "p4/images/s1.png" in reasons
    assert task.classes == ["background", "lesion"]
    assert sum(len(s) for s in task.splits.values()) == 4  # p1-p3's s1 and nothing of the 3 bad or p4's truncated


def test_task_level_problems_are_errors_naming_the_folder(tmp_path):
    with pytest.raises(TaskError, match="folder missing"):
        load(tmp_path / "nowhere")
    empty = np.zeros((8, 8), np.uint8)
    for patient in ("p1", "p2", "p3"):
        _png_patient(tmp_path / patient, {"s1": empty}, (8, 8))
    with pytest.raises(TaskError, match="all background"):
        load(tmp_path)
    (tmp_path / "p1" / "masks" / "s1.png").unlink()
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["p2", "ghost"], "test": ["p3"]}))
    for patient in ("p2", "p3"):
        Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / patient / "masks" / "s1.png")
    with pytest.raises(TaskError, match=r"splits.json: patient\(s\) \['ghost'\]"):
        load(tmp_path)
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["p2", "p3"], "test": ["p3"]}))
    with pytest.raises(TaskError, match=r"splits.json: patient\(s\) \['p3'\] in more than one split"):
        load(tmp_path)


def test_patient_subsets_are_nested_and_slices_follow_their_patients(phantom):
    picked = {}
    for fraction in (1.0, 0.5, 0.25):
        module = TaskDataModule("masks", str(phantom), image_size=32, fraction=fraction, seed=1, num_workers=0)
        module.load()
        picked[fraction] = set(module.train_patients)
        items = module.task.splits["train"].items
        assert {items[i].patient for i in module.train_indices} == picked[fraction]
        assert module.n_train == len(picked[fraction]) >= 1
        assert module.batch_size == 8  # slices; a classification task's default is 64
    assert picked[0.25] <= picked[0.5] <= picked[1.0] == set(module.task.splits["train"].patients)
    strata = module.task.strata
    for count in range(1, len(picked[1.0]) + 1):
        module = TaskDataModule("masks", str(phantom), patients=count, seed=1)
        module.load()
        chosen = module.train_patients
        assert len(chosen) == count and set(chosen) <= picked[1.0]
        with_rarest = sum(strata[p] for p in chosen)  # proportions kept in every prefix
        share = sum(strata[p] for p in picked[1.0]) / len(picked[1.0])
        assert abs(with_rarest - share * count) <= 1
    with pytest.raises(ValueError, match="fractions of the patients"):
        TaskDataModule("masks", str(phantom), per_class=2).load()
    with pytest.raises(ValueError, match="has 5 training patients"):
        TaskDataModule("masks", str(phantom), patients=6).load()


def test_augmentation_moves_image_and_mask_together(phantom):
    task = load(phantom)
    torch.manual_seed(0)
    data = SegmentationSlices(task, "train", range(len(task.splits["train"])), 32, augment=True)
    data.images = (data.masks > 0).float()  # an image that is its mask: any misalignment shows
    data.normalise = torch.nn.Identity()
    for i in range(len(data)):
        image, mask, patient = data[i]
        assert image.shape == (3, 32, 32) and mask.dtype == torch.long
        assert torch.equal(image[0] > 0.5, mask > 0)
        assert 0 <= int(patient) < len(task.splits["train"].patients)
