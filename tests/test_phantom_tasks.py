from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medssl.downstream import phantom_tasks
from medssl.downstream.phantom_tasks import ORGAN_CLASSES, TaskCounts, write_phantom_tasks

COUNTS = TaskCounts(organ_per_class=40, covid_per_class=100, brain_per_class=100, covid_extra_test_per_class=4,
                    brain_extra_test_per_class=3)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks") / "phantom"
    return write_phantom_tasks(root, seed=1, size=48, counts=COUNTS, progress=False)


def organ_arrays(path):
    data = np.load(path)
    x = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
    y = np.concatenate([data[f"{s}_labels"] for s in ("train", "val", "test")]).ravel()
    return x, y


def folder_arrays(files, size=48):
    return np.stack([np.asarray(Image.open(f).convert("L").resize((size, size))) for f in files])


def covid_files(root):
    pos = sorted((root / "Images-processed" / "CT_COVID").iterdir())
    neg = sorted((root / "Images-processed" / "CT_NonCOVID").iterdir())
    return pos, neg


def intensity_accuracy(x, y):
    """Cross-validated accuracy of a classifier that sees only global mean and spread."""
    flat = x.reshape(len(x), -1).astype(float)
    features = np.c_[flat.mean(1), flat.std(1)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return cross_val_score(model, features, y, cv=5).mean()


@pytest.mark.slow
def test_organ_npz_has_the_medmnist_layout(tasks):
    data = np.load(tasks["organ"], allow_pickle=False)
    assert sorted(data.files) == sorted([f"{s}_{k}" for s in ("train", "val", "test")
                                         for k in ("images", "labels")] + ["class_names"])
    assert data["class_names"].tolist() == list(ORGAN_CLASSES)  # MedMNIST readers ignore it
    total = 0
    for split in ("train", "val", "test"):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.shape == (len(images), 1)
        assert set(np.unique(labels)) == set(range(len(ORGAN_CLASSES)))
        total += len(images)
    assert total == COUNTS.organ_per_class * len(ORGAN_CLASSES)


def test_covid_folder_has_the_ucsd_layout_with_disjoint_split_lists(tasks):
    root = tasks["covid"]
    for name in ("COVID", "NonCOVID"):
        files = {p.name for p in (root / "Images-processed" / f"CT_{name}").iterdir()}
        assert len(files) == COUNTS.covid_per_class + COUNTS.covid_extra_test_per_class
        listed = []
        for split in ("train", "val", "test"):
            names = (root / "Data-split" / name / f"{split}CT_{name}.txt").read_text().split()
            assert names, split
            listed += names
        assert sorted(listed) == sorted(files)  # every image in exactly one split
    suffixes = {p.suffix for p in (root / "Images-processed" / "CT_COVID").iterdir()}
    assert suffixes == {".png", ".jpg"}  # mixed exports, like the real collection


def test_brain_folder_has_train_and_test_per_class(tasks):
    root = tasks["brain"]
    counts = {(s, c): len(list((root / s / c).glob("*.png")))
              for s in ("train", "test") for c in ("a_without", "b_with")}
    assert all(counts.values())
    assert sum(counts.values()) == 2 * (COUNTS.brain_per_class + COUNTS.brain_extra_test_per_class)
    assert counts["train", "a_without"] > counts["test", "a_without"]


@pytest.mark.parametrize("samples", [phantom_tasks.covid_samples, phantom_tasks.brain_samples])
def test_extra_test_images_leave_the_split_as_it_was(samples):
    """The extra test images come after the split's own: the training images (those the
    calibration measured) and the split's test images stay the same, the extras are new patients
    of both classes in equal numbers, all of them test images."""
    plain = list(samples(0, 6, 32, False))
    more = list(samples(0, 6, 32, False, extra_test_per_class=3))
    assert len(more) == len(plain) + 6
    for a, b in zip(plain, more):
        assert (a.name, a.label, a.split) == (b.name, b.label, b.split)
        np.testing.assert_array_equal(a.image, b.image)
    extra = more[len(plain):]
    assert {s.split for s in extra} == {"test"} and sorted(s.label for s in extra) == [0, 0, 0, 1, 1, 1]
    assert len({s.name for s in more}) == len(more)
    assert not any(np.array_equal(e.image, a.image) for e in extra for a in plain)


def test_tasks_are_reproducible(tasks, tmp_path):
    small = TaskCounts(2, 3, 3)
    a = write_phantom_tasks(tmp_path / "a", seed=4, size=32, counts=small, progress=False)
    b = write_phantom_tasks(tmp_path / "b", seed=4, size=32, counts=small, progress=False)
    for key in np.load(a["organ"]).files:
        np.testing.assert_array_equal(np.load(a["organ"])[key], np.load(b["organ"])[key])
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix in (".png", ".jpg"):
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / rel)),
                                          np.asarray(Image.open(tmp_path / "b" / rel)))
    c = write_phantom_tasks(tmp_path / "c", seed=5, size=32, counts=small, progress=False)
    assert not np.array_equal(np.load(a["organ"])["train_images"], np.load(c["organ"])["train_images"])


def test_binary_tasks_are_not_separable_by_global_intensity(tasks):
    pos, neg = covid_files(tasks["covid"])
    covid = intensity_accuracy(folder_arrays(pos + neg), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
    brain_root = tasks["brain"]
    with_bleed = sorted(brain_root.glob("*/b_with/*.png"))
    without = sorted(brain_root.glob("*/a_without/*.png"))
    brain = intensity_accuracy(folder_arrays(with_bleed + without),
                               np.r_[np.ones(len(with_bleed)), np.zeros(len(without))])
    assert covid < 0.65 and brain < 0.65, (covid, brain)


def test_organ_classes_need_more_than_global_intensity(tasks):
    x, y = organ_arrays(tasks["organ"])
    pixels = cross_val_score(RandomForestClassifier(100, random_state=0), x.reshape(len(x), -1), y,
                             cv=5).mean()
    intensity = intensity_accuracy(x, y)
    assert intensity < 0.6 and pixels > intensity + 0.25, (pixels, intensity)
    # Left and right organs differ only by their neighbours (the heart beside the left lung,
    # the liver beside the right kidney), which shifts brightness a little but does not separate.
    for left, right in (("lung-left", "lung-right"), ("kidney-left", "kidney-right")):
        pair = np.isin(y, [ORGAN_CLASSES.index(left), ORGAN_CLASSES.index(right)])
        assert intensity_accuracy(x[pair], y[pair]) < 0.85, left


def test_interrupted_write_leaves_no_task_folder(tmp_path, monkeypatch):
    def broken(*args, **kwargs):  # interrupted while the last task is written
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(phantom_tasks, "brain_samples", broken)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_tasks(tmp_path / "t", size=32, counts=TaskCounts(1, 1, 1), progress=False)
    assert not (tmp_path / "t").exists()
    monkeypatch.undo()
    paths = write_phantom_tasks(tmp_path / "t", size=32, counts=TaskCounts(1, 1, 1), progress=False)
    assert all(Path(p).exists() for p in paths.values())
    with pytest.raises(FileExistsError):
        write_phantom_tasks(tmp_path / "t", size=32, counts=TaskCounts(1, 1, 1), progress=False)


@pytest.mark.parametrize("field, value", [("organ_per_class", 0), ("brain_per_class", -2),
                                          ("covid_extra_test_per_class", -1), ("segmentation_slices", 1.5)])
def test_task_counts_refuse_what_would_write_too_few_images(field, value):
    with pytest.raises(ValueError, match=f"TaskCounts.{field} = {value}: must be a whole number of at least"):
        TaskCounts(**{field: value})
    assert TaskCounts(covid_extra_test_per_class=0).covid_extra_test_per_class == 0


@pytest.mark.parametrize("argv, message", [(["--covid-extra-test", "-3"], "--covid-extra-test: -3: must be at least 0"),
                                           (["--brain-per-class", "0"], "--brain-per-class: 0: must be at least 1"),
                                           (["--patients", "many"], "--patients: invalid count value: 'many'")])
def test_phantom_command_names_the_bad_count(argv, message, capsys, tmp_path):
    from medssl.commands import phantom as command

    with pytest.raises(SystemExit) as stop:
        command.parser("medssl phantom").parse_args(["--out", str(tmp_path), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
