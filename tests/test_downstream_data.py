import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn import metrics as skm

from medssl.data.phantom import phantom_volume
from medssl.data.synthetic_dicom import write_series
from medssl.downstream import FORMATS, ClassificationMetrics, Split, TaskData, TaskError, load_task, nested_subsets
from medssl.downstream.formats import Sample, TaskFormat
from medssl.downstream.formats.medmnist import read_npz
from medssl.downstream.phantom_tasks import ORGAN_CLASSES, write_phantom_tasks

from conftest import task_counts


@pytest.fixture(scope="module")
def phantom_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("down") / "tasks"
    return write_phantom_tasks(root, size=32, counts=task_counts(4, 10, 10), progress=False)


def copy_of(path, tmp_path):
    target = tmp_path / path.name
    (shutil.copytree if path.is_dir() else shutil.copy)(path, target)
    return target


@pytest.mark.slow
def test_covid_layout_with_official_lists(phantom_tasks):
    task = load_task("covid", phantom_tasks["covid"])
    assert task.classes == ["NonCOVID", "COVID"]
    assert sum(len(s) for s in task.splits.values()) == 20
    listed = (phantom_tasks["covid"] / "Data-split" / "COVID" / "testCT_COVID.txt").read_text().split()
    test_covid = [p for p, y in zip(task.splits["test"].items, task.splits["test"].labels) if y == 1]
    assert sorted(p.split("/")[-1] for p in test_covid) == sorted(listed)
    image = task.image("train", 0)
    assert image.dtype == np.float32 and image.ndim == 2 and 0 <= image.min() and image.max() <= 1


def test_covid_bad_inputs_name_the_file(phantom_tasks, tmp_path):
    root = copy_of(phantom_tasks["covid"], tmp_path)
    listing = root / "Data-split" / "COVID" / "valCT_COVID.txt"
    listing.write_text(listing.read_text() + "ghost.png\n")
    with pytest.raises(TaskError, match=r"valCT_COVID.txt: lists 'ghost.png'"):
        load_task("covid", root)
    listing.unlink()
    with pytest.raises(TaskError, match="valCT_COVID.txt: split list missing"):
        load_task("covid", root)


def test_unreadable_image_is_named_and_left_out(phantom_tasks, tmp_path):
    root = copy_of(phantom_tasks["brain"], tmp_path)
    victim = sorted((root / "train" / "b_with").iterdir())[0]
    victim.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=f"{victim.name}: unreadable image"):
        task = load_task("brain", root, progress=False)
    assert [f for f, _ in task.skipped] == [str(victim)]
    assert str(victim) not in [p for s in task.splits.values() for p in s.items]


def test_medmnist_npz(phantom_tasks, tmp_path):
    task = load_task("medmnist", phantom_tasks["organ"])
    assert len(task.classes) == 7 and task.image("test", 0).shape == (28, 28)
    data = dict(np.load(phantom_tasks["organ"]))
    data.pop("val_labels")
    np.savez(tmp_path / "broken.npz", **data)
    with pytest.raises(TaskError, match=r"broken.npz: arrays \['val_labels'\] missing"):
        load_task("medmnist", tmp_path / "broken.npz")
    held = read_npz(tmp_path / "broken.npz", splits=None, as_grey=True)  # what the kNN monitor reads
    assert sorted(held) == ["test", "train"]
    np.testing.assert_array_equal(held["test"][0][0], task.image("test", 0))
    np.testing.assert_array_equal(held["test"][1], task.splits["test"].labels)


# MedMNIST's label names (medmnist/info.py, INFO["organsmnist"]["label"]), typed out here on purpose
ORGANSMNIST_NAMES = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                     "lung-left", "lung-right", "pancreas", "spleen"]


def eleven_class_npz(path, **extra):
    """A MedMNIST-layout .npz with one 8 x 8 image of each class 0..10 per split."""
    arrays = {f"{s}_{k}": (np.zeros((11, 8, 8), np.uint8) if k == "images" else np.arange(11, dtype=np.uint8)[:, None])
              for s in ("train", "val", "test") for k in ("images", "labels")}
    np.savez(path, **arrays, **extra)
    return path


def test_the_phantom_organ_npz_carries_its_class_names(phantom_tasks):
    with np.load(phantom_tasks["organ"], allow_pickle=False) as data:
        stored = data["class_names"]
    assert stored.dtype.kind == "U" and stored.tolist() == list(ORGAN_CLASSES)  # str, no pickle
    assert load_task("medmnist", phantom_tasks["organ"]).classes == list(ORGAN_CLASSES)


def test_medmnist_class_names_from_the_file_name_or_numbers(tmp_path, phantom_tasks):
    for name in ("organsmnist_28.npz", "organsmnist.npz", "OrganAMNIST_224.npz", "organcmnist_64.npz"):
        assert load_task("medmnist", eleven_class_npz(tmp_path / name)).classes == ORGANSMNIST_NAMES, name
    numbers = [str(i) for i in range(11)]
    for name in ("mydata.npz", "organsmnist_phantom.npz", "organmnist3d.npz", "organsmnist_224_b.npz"):
        assert load_task("medmnist", eleven_class_npz(tmp_path / name)).classes == numbers, name
    # a phantom file written before it stored its names: numbers, not OrganSMNIST's 11 organs
    old = dict(np.load(phantom_tasks["organ"]))
    old.pop("class_names")
    (tmp_path / "old").mkdir()
    np.savez(tmp_path / "old" / "organsmnist_phantom.npz", **old)
    assert load_task("medmnist", tmp_path / "old" / "organsmnist_phantom.npz").classes == [str(i) for i in range(7)]
    # the file's own names come first, even under a MedMNIST file name
    own = [f"class {i}" for i in range(11)]
    assert load_task("medmnist", eleven_class_npz(tmp_path / "pathmnist.npz", class_names=np.array(own))).classes == own


def test_medmnist_class_names_that_do_not_fit_name_the_file(tmp_path):
    short = eleven_class_npz(tmp_path / "short.npz", class_names=np.array(["a", "b"]))
    with pytest.raises(TaskError, match=r"short.npz: class_names names 2 classes but the labels go up to 10"):
        load_task("medmnist", short)
    pickled = eleven_class_npz(tmp_path / "objects.npz", class_names=np.array(list("abcdefghijk"), dtype=object))
    with pytest.raises(TaskError, match=r"objects.npz: class_names is not an array of str"):
        load_task("medmnist", pickled)


def test_a_format_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    """A throwaway format (images, labels and splits as .npy files) registered here is read by
    load_task and by the fine-tuning data module, and written by its own writer."""
    from medssl.downstream.datamodule import TaskDataModule

    def write(path, samples, classes):
        samples = list(samples)
        path.mkdir(parents=True)
        for name, values in (("images", [s.image for s in samples]), ("labels", [s.label for s in samples]),
                             ("splits", [s.split for s in samples])):
            np.save(path / f"{name}.npy", np.stack(values))
        (path / "classes.txt").write_text("\n".join(classes))
        return path

    def load(path, **_):
        path = Path(path)
        images, labels, splits = (np.load(path / f"{n}.npy") for n in ("images", "labels", "splits"))
        rows = {s: np.flatnonzero(splits == s) for s in ("train", "val", "test")}
        return TaskData(path.name, (path / "classes.txt").read_text().split("\n"),
                        {s: Split(list(range(len(r))), labels[r]) for s, r in rows.items()},
                        str(path), arrays={s: images[r] for s, r in rows.items()})

    monkeypatch.setitem(FORMATS, "flat-npy", TaskFormat(load, write))
    rng = np.random.default_rng(0)
    samples = [Sample(f"{i}", i % 2, ("train", "train", "val", "test")[i // 2 % 4],
                      rng.integers(0, 255, (16, 16), dtype=np.uint8)) for i in range(24)]
    FORMATS["flat-npy"].write(tmp_path / "flat", samples, ["no", "yes"])
    task = load_task("flat-npy", tmp_path / "flat")
    assert task.classes == ["no", "yes"] and [len(task.splits[s]) for s in ("train", "val", "test")] == [12, 6, 6]
    np.testing.assert_allclose(task.image("val", 0), samples[4].image / 255.0, atol=1e-6)
    data = TaskDataModule("flat-npy", str(tmp_path / "flat"), image_size=32, batch_size=4, num_workers=0)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and set(labels.tolist()) <= {0, 1} and data.num_classes == 2


def test_brain_layout_has_a_seeded_stratified_val_split(phantom_tasks):
    a = load_task("brain", phantom_tasks["brain"], val_fraction=0.25, seed=3)
    b = load_task("brain", phantom_tasks["brain"], val_fraction=0.25, seed=3)
    c = load_task("brain", phantom_tasks["brain"], val_fraction=0.25, seed=4)
    assert a.classes == ["a_without", "b_with"]
    assert a.splits["val"].items == b.splits["val"].items != c.splits["val"].items
    assert set(np.bincount(a.splits["val"].labels)) <= {2, 3}  # both classes, stratified
    assert not set(a.splits["val"].items) & set(a.splits["train"].items)


def test_brain_test_label_unknown_to_training_is_an_error(phantom_tasks, tmp_path):
    root = copy_of(phantom_tasks["brain"], tmp_path)
    (root / "test" / "c_other").mkdir()
    shutil.copy(next((root / "test" / "b_with").iterdir()), root / "test" / "c_other" / "x.png")
    with pytest.raises(TaskError, match=r"unknown label\(s\) \['c_other'\]"):
        load_task("brain", root)


def test_own_data_as_folders_and_csv_with_dicom(tmp_path):
    for label in ("benign", "malignant"):
        for i in range(6):
            (tmp_path / "folders" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp_path / "folders" / label / f"{i}.png")
    task = load_task("folder", tmp_path / "folders", val_fraction=0.2, test_fraction=0.3)
    assert task.classes == ["benign", "malignant"] and sum(len(s) for s in task.splits.values()) == 12
    hu, _, _ = phantom_volume(0, 0, 2, 32)
    dicom = write_series(tmp_path / "dicom", hu)
    rows = ["path,label,split", f"{dicom[0]},lesion,train", f"{dicom[1]},normal,train",
            "folders/benign/0.png,normal,val", "folders/malignant/1.png,lesion,test"]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    task = load_task("csv", tmp_path / "data.csv")
    image = task.image("train", 0)
    assert task.classes == ["lesion", "normal"] and image.shape == (32, 32)
    np.testing.assert_allclose(image, np.clip((hu[0] + 1024) / 4096, 0, 1), atol=1e-6)
    (tmp_path / "bad.csv").write_text("path,label,split\nfolders/benign/0.png,normal,train\n"
                                      "folders/malignant/0.png,lesion,train\n"
                                      "folders/benign/1.png,cyst,test\n")
    with pytest.raises(TaskError, match=r"bad.csv \(test rows\): unknown label\(s\) \['cyst'\]"):
        load_task("csv", tmp_path / "bad.csv")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=5, max_size=200), st.integers(0, 10 ** 6),
       st.integers(1, 3))
def test_subsets_are_stratified_seeded_and_nested(labels, seed, floor):
    labels = np.asarray(labels)
    fractions = (1.0, 0.5, 0.25, 0.1, 0.05, 0.01)
    subsets = nested_subsets(labels, fractions, seed=seed, min_per_class=floor)
    assert np.array_equal(subsets[1.0], np.arange(len(labels)))
    assert all(np.array_equal(v, nested_subsets(labels, fractions, seed, floor)[k])
               for k, v in subsets.items())
    for big, small in zip(fractions, fractions[1:]):
        assert set(subsets[small]) <= set(subsets[big])  # nested
    for fraction, picked in subsets.items():
        for c in np.unique(labels):
            n = int((labels == c).sum())
            got = int((labels[picked] == c).sum())
            assert got == min(n, max(floor, int(round(fraction * n))))  # every class kept


def test_metrics_equal_scikit_learn_on_fixed_predictions():
    rng = np.random.default_rng(0)
    for classes in (2, 5):
        target = rng.integers(0, classes, 300)
        logits = rng.normal(size=(300, classes)) + 1.5 * np.eye(classes)[target]
        probs = torch.softmax(torch.tensor(logits), 1).float()
        metrics = ClassificationMetrics(classes)
        for chunk in range(0, 300, 64):  # batched, like validation
            metrics.update(probs[chunk:chunk + 64], torch.tensor(target[chunk:chunk + 64]))
        got = metrics.compute()
        pred = probs.argmax(1).numpy()
        p = probs.numpy().astype(np.float64)
        auc = (skm.roc_auc_score(target, p[:, 1]) if classes == 2
               else skm.roc_auc_score(target, p, multi_class="ovr", average="macro"))
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(target, pred), abs=1e-6)
        assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(target, pred), abs=1e-6)
        assert got["f1_macro"] == pytest.approx(skm.f1_score(target, pred, average="macro"), abs=1e-6)
        assert got["precision"] == pytest.approx(skm.precision_score(target, pred, average="macro"), abs=1e-6)
        assert got["recall"] == pytest.approx(skm.recall_score(target, pred, average="macro"), abs=1e-6)
        assert got["auc"] == pytest.approx(auc, abs=1e-5)
        assert got["confusion"] == skm.confusion_matrix(target, pred).tolist()
