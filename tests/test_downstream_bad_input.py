"""Downstream tasks with bad input: broken or non-image files, one class, messy CSVs, tiny batches."""
import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medssl.data.phantom import phantom_volume
from medssl.data.synthetic_dicom import write_series
from medssl.downstream import TaskError, load_task


def class_folders(root: Path, classes=("a", "b"), per_class=6, size=16) -> Path:
    rng = np.random.default_rng(0)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def all_items(task) -> list[str]:
    return [p for s in task.splits.values() for p in s.items]


def truncated_jpeg(path: Path) -> Path:
    noise = np.random.default_rng(1).integers(0, 255, (128, 128), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # cut mid-scan
    return path


def bomb_png(path: Path, side: int = 15000) -> Path:
    Image.new("1", (side, side)).save(path, optimize=True)  # all zeros: tiny on disk
    return path


def test_truncated_jpeg_passes_verify_but_is_skipped_and_named(tmp_path):
    root = class_folders(tmp_path / "data")
    bad = truncated_jpeg(root / "a" / "cut.jpg")
    with Image.open(bad) as image:
        image.verify()  # the cheap check does not see it
    with pytest.warns(UserWarning, match=r"cut\.jpg: .*truncated"):
        task = load_task("folder", root, progress=False)
    assert str(bad) not in all_items(task)
    assert len(all_items(task)) == 12
    assert [(Path(f).name, "truncated" in r) for f, r in task.skipped] == [("cut.jpg", True)]
    for split, data in task.splits.items():  # everything left decodes
        for i in range(len(data)):
            task.image(split, i)


def test_decompression_bomb_png_is_skipped_and_named(tmp_path):
    root = class_folders(tmp_path / "data")
    bomb = bomb_png(root / "b" / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.warns(UserWarning, match=r"bomb\.png: .*decompression bomb"):
        task = load_task("folder", root, progress=False)
    assert str(bomb) not in all_items(task)
    assert [Path(f).name for f, _ in task.skipped] == ["bomb.png"]


def test_ingestion_and_tasks_read_a_picture_alike_and_give_one_reason(tmp_path):
    from medssl.data.errors import UnreadableInput
    from medssl.data.ingest.images import read_image

    root = class_folders(tmp_path / "data")
    cut = truncated_jpeg(root / "a" / "cut.jpg")
    Image.fromarray(np.full((16, 16), np.nan, np.float32)).save(root / "b" / "nan.tif")
    reasons = {}
    for bad in (cut, root / "b" / "nan.tif"):
        with pytest.raises(UnreadableInput) as error:
            read_image(bad)  # what ingestion writes to ingest_errors.csv
        assert error.value.path == str(bad) and str(error.value) == f"{bad}: {error.value.reason}"
        reasons[str(bad)] = error.value.reason
    with pytest.warns(UserWarning, match=r"nan\.tif: .*NaN"):
        task = load_task("folder", root, progress=False)
    assert dict(task.skipped) == reasons
    np.testing.assert_allclose(task.image("train", 0) * 255, read_image(task.splits["train"].items[0]), atol=1e-4)


def test_non_image_files_are_ignored_and_dicom_is_recognised(tmp_path):
    root = class_folders(tmp_path / "data")
    for name in ("Thumbs.db", "desktop.ini", "README.txt", ".DS_Store", "notes"):
        (root / "a" / name).write_bytes(b"\x00\x01 not an image \xff" * 20)
    hu, _, _ = phantom_volume(0, 0, 2, 16)
    dicom = write_series(tmp_path / "dicom", hu)
    shutil.copy(dicom[0], root / "b" / "slice.dcm")
    shutil.copy(dicom[1], root / "b" / "1.2.840.1234")  # scanner-style name: found by its 'DICM' preamble
    with pytest.warns(UserWarning, match="Thumbs.db"):
        task = load_task("folder", root, progress=False)
    names = {Path(p).name for p in all_items(task)}
    assert {"slice.dcm", "1.2.840.1234"} <= names
    assert not names & {"Thumbs.db", "desktop.ini", "README.txt", ".DS_Store", "notes"}
    ignored = {Path(f).name: r for f, r in task.skipped}
    assert set(ignored) == {"Thumbs.db", "desktop.ini", "README.txt", "notes"}
    assert all("not an image" in r for r in ignored.values())


def covid_layout(root: Path, per_list: int = 3) -> Path:
    """The UCSD-AI4H COVID-CT layout: images and the official split lists."""
    rng = np.random.default_rng(0)
    for name in ("COVID", "NonCOVID"):
        (root / "Images-processed" / f"CT_{name}").mkdir(parents=True)
        (root / "Data-split" / name).mkdir(parents=True)
        for split in ("train", "val", "test"):
            files = [f"{split}-{i}.png" for i in range(per_list)]
            for file in files:
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                    root / "Images-processed" / f"CT_{name}" / file)
            (root / "Data-split" / name / f"{split}CT_{name}.txt").write_text("\n".join(files) + "\n")
    return root


def test_bad_images_in_an_official_split_are_dropped_and_listed(tmp_path):
    root = covid_layout(tmp_path / "covid")
    victim = root / "Images-processed" / "CT_COVID" / "train-0.png"
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.warns(UserWarning, match=victim.name):
        task = load_task("covid", root, progress=False)
    assert str(victim) not in all_items(task)
    assert np.bincount(task.splits["train"].labels).tolist() == [3, 2]
    out = task.write_skipped(tmp_path / "results")
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [str(victim)] and rows[0]["reason"]


def test_clean_task_has_no_skipped_list(tmp_path):
    task = load_task("folder", class_folders(tmp_path / "data"), progress=False)
    assert task.skipped == [] and task.write_skipped(tmp_path / "results") is None


def test_one_class_task_names_the_folder_and_the_counts(tmp_path):
    root = class_folders(tmp_path / "only", classes=("normal",), per_class=7)
    with pytest.raises(TaskError, match=r"only.*at least two classes.*'normal': 7"):
        load_task("folder", root, progress=False)


def test_class_left_empty_by_bad_files_is_a_clear_error(tmp_path):
    root = class_folders(tmp_path / "data", per_class=6)
    for f in (root / "b").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(TaskError, match=r"data.*at least two classes"):
        load_task("folder", root, progress=False)


def test_csv_with_byte_order_mark_is_read(tmp_path):
    class_folders(tmp_path / "img")
    rows = ["path,label"] + [f"img/{c}/{i}.png,{c}" for c in "ab" for i in range(6)]
    (tmp_path / "bom.csv").write_bytes("\n".join(rows).encode("utf-8-sig"))
    task = load_task("csv", tmp_path / "bom.csv", progress=False)
    assert task.classes == ["a", "b"] and len(all_items(task)) == 12


def test_csv_labels_are_stripped_and_merges_are_reported(tmp_path):
    class_folders(tmp_path / "img")
    rows = ["path, label ,split"]
    for c in "ab":
        for i in range(6):
            spaced = f" {c}" if i % 2 else f"{c} "  # the same label, spaced two ways
            rows.append(f"img/{c}/{i}.png,{spaced},{' train' if i < 4 else 'test '}")
    (tmp_path / "spaces.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"spaces\.csv: .*surrounding spaces.*' a'.*'a '"):
        task = load_task("csv", tmp_path / "spaces.csv", progress=False)
    assert task.classes == ["a", "b"]
    assert np.bincount(task.splits["train"].labels).tolist() == [4, 4]


def test_training_loader_never_ends_with_a_batch_of_one(tmp_path):
    from torchvision.models import resnet18

    from medssl.downstream.datamodule import TaskDataModule

    class_folders(tmp_path / "img", per_class=9)
    batch = 4
    train = [f"img/{c}/{i}.png,{c},train" for c in "ab" for i in range(9)][: 4 * batch + 1]
    rows = ["path,label,split", *train, "img/a/8.png,a,val", "img/b/8.png,b,val",
            "img/a/7.png,a,test", "img/b/7.png,b,test"]
    (tmp_path / "k.csv").write_text("\n".join(rows) + "\n")
    data = TaskDataModule("csv", str(tmp_path / "k.csv"), image_size=32, batch_size=batch, num_workers=0)
    data.setup("fit")
    assert len(data.train_indices) == 4 * batch + 1
    model = resnet18(num_classes=2).train()
    sizes = []
    for images, labels in data.train_dataloader():
        sizes.append(len(labels))
        model(images)  # BatchNorm needs more than one value per channel at 1x1 feature maps
    assert min(sizes) > 1 and sum(sizes) == 4 * batch + 1  # the odd image joins a batch
    assert len(data.train_dataloader()) == len(sizes)


def test_finetune_run_lists_the_skipped_files_in_its_log_folder(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from medssl.downstream.datamodule import TaskDataModule

    root = class_folders(tmp_path / "data")
    truncated_jpeg(root / "a" / "cut.jpg")
    (root / "b" / "Thumbs.db").write_bytes(b"\x00" * 64)
    data = TaskDataModule("folder", str(root), image_size=32, batch_size=4, num_workers=0)
    data.trainer = pl.Trainer(logger=CSVLogger(tmp_path / "runs"), accelerator="cpu",
                              enable_progress_bar=False)
    with pytest.warns(UserWarning, match="cut.jpg"):
        data.setup("fit")
    with open(Path(data.trainer.log_dir) / "skipped_images.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["file"]).name for r in rows) == ["Thumbs.db", "cut.jpg"]


def test_finetune_model_with_one_class_is_a_clear_error():
    from medssl.downstream.finetune import FineTune

    with pytest.raises(ValueError, match="at least two classes"):
        FineTune(num_classes=1, arch="resnet18")


def test_sweep_lists_the_skipped_files_of_each_task_beside_its_results(tmp_path):
    from medssl.downstream.sweep import SweepConfig, check_inputs

    root = class_folders(tmp_path / "data")
    truncated_jpeg(root / "a" / "cut.jpg")
    out = tmp_path / "sweep" / "results.csv"
    config = SweepConfig(tasks={"mine": ("folder", str(root))})
    with pytest.warns(UserWarning, match="cut.jpg"):
        assert check_inputs(config, out) == {"random": "random"}
    with open(tmp_path / "sweep" / "mine" / "skipped_images.csv") as f:
        assert [Path(r["file"]).name for r in csv.DictReader(f)] == ["cut.jpg"]
