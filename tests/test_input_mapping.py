"""A backbone is fed at fine-tuning time what it was fed in pre-training: the mapping recorded at
export, read back by the loader, used by the downstream data module for every kind of input."""
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medssl.checkpoints import CheckpointError, read_backbone
from medssl.checkpoints.export import export_backbone, export_pretrained, pretraining_input
from medssl.data import SliceStore
from medssl.data.ingest import Options, ingest, pipeline
from medssl.data.input_mapping import CT_FULL_MEAN, CT_FULL_STD, DEFAULT, STUDY_INPUTS, InputMapping
from medssl.data.intensity import window
from medssl.data.synthetic_dicom import write_series
from medssl.downstream.cli import finetune_cli
from medssl.downstream.datamodule import InputMappingWarning, TaskDataModule
from medssl.downstream.sweep import SweepConfig
from medssl.models import build_backbone
from medssl.pretrain.datamodule import SliceStoreDataModule, SliceViews
from medssl.pretrain.views import MultiView

ROOT = Path(__file__).resolve().parents[1]
RAW_RANGE = {"mode": "range", "low": 0, "high": 4095}
# one whole-slice view, no flips: a pre-training view that is the slice itself, normalised
PLAIN_VIEW = {"size": 32, "count": 1, "scale": [1.0, 1.0], "hflip_p": 0.0, "mean": [0.3], "std": [0.2]}


def pictures_16bit(root: Path) -> list[Path]:
    """Two class folders of 16-bit PNGs holding 12-bit values (as CT exports often do)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    files = []
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            values = 500 + 3000 * ((xx + yy * (i + 1)) % 32) / 31 + rng.integers(0, 200, (32, 32))
            files.append(root / label / f"{i}.png")
            Image.fromarray(values.astype(np.uint16)).save(files[-1])
    return files


def backbone(path: Path, mapping: InputMapping | None = None) -> Path:
    """A resnet18 export recording ``mapping`` (None: nothing recorded)."""
    torch.manual_seed(0)
    extra = {"input": mapping.as_dict()} if mapping else {}
    return export_backbone(build_backbone("resnet18"), path, method="byol", arch="resnet18", **extra)


def seen(data: TaskDataModule, index: int = 0) -> torch.Tensor:
    """The first channel of what the network sees for validation image ``index``."""
    data.setup("fit")
    return data.val_dataloader().dataset[index][0][0]


@pytest.fixture(scope="module")
def raw_store(tmp_path_factory):
    """A store built from the 16-bit pictures, and the backbone exported from pre-training on it."""
    root = tmp_path_factory.mktemp("raw")
    files = pictures_16bit(root / "pictures")
    ingest([root / "pictures"], root / "store", Options(size=32), workers=1, progress=False)
    data_config = {"store": str(root / "store"), "intensity": RAW_RANGE, "views": [PLAIN_VIEW]}
    torch.manual_seed(0)
    exported = export_pretrained(build_backbone("resnet18"), root / "byol_backbone.pt", method="byol",
                                 arch="resnet18", epoch=1, step=2, model_config={}, data_config=data_config)
    return root, files, data_config, exported


def test_image_folder_store_records_the_modality_it_read(raw_store):
    root, _, _, _ = raw_store
    store = SliceStore(root / "store")
    assert store.units == "raw"
    assert store.attrs["modalities"] == sorted(set(store.manifest.modality)) == ["OT"]


def test_an_interrupted_image_folder_ingest_still_resumes(tmp_path, monkeypatch):
    for folder in ("one", "two"):
        pictures_16bit(tmp_path / "in" / folder)
    real, calls = pipeline.convert, []

    def interrupted(item, options):
        calls.append(item)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(item, options)

    monkeypatch.setattr(pipeline, "convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=1, progress=False,
               shard_slices=1)
    monkeypatch.setattr(pipeline, "convert", real)
    summary, _, _ = ingest([tmp_path / "in"], tmp_path / "s", Options(size=32), workers=1, progress=False,
                           shard_slices=1)
    assert summary.series_already_done == 2 and summary.series_written == 2
    store = SliceStore(tmp_path / "s")
    assert len(store) == 24 and store.manifest.source.is_unique
    assert store.attrs["modalities"] == ["OT"]


def test_exported_input_round_trips_through_the_loader(raw_store):
    _, _, data_config, exported = raw_store
    stored = torch.load(exported, weights_only=True)
    want = InputMapping(RAW_RANGE, 0.3, 0.2, 32, "raw")
    assert stored["input"] == want.as_dict()
    _, report = read_backbone(exported, arch="resnet18")
    assert report.input == want and report.input_from == "recorded in the file"
    assert report.metadata["input"] == want.as_dict()
    assert pretraining_input({**data_config, "store": None}).units == "raw"  # range: raw values


def test_16_bit_pictures_get_the_spread_of_a_pretraining_view(raw_store):
    root, files, data_config, exported = raw_store
    data = TaskDataModule("folder", str(root / "pictures"), image_size=32, num_workers=0, backbone=str(exported))
    pretraining = SliceStoreDataModule(**data_config, batch_size=1, num_workers=0)
    pretraining.setup()
    views = SliceViews(pretraining.store, pretraining.intensity, MultiView(pretraining.views_config))
    row_of = {Path(s).resolve(): i for i, s in enumerate(pretraining.store.manifest.source)}
    data.setup("fit")
    split = data.task.splits["val"]
    for index in range(len(split)):
        fine_tuning = seen(data, index)
        view = views[row_of[Path(split.items[index]).resolve()]][0][0]
        torch.testing.assert_close(fine_tuning, view, atol=1e-4, rtol=0)
        assert fine_tuning.std() > 0.5 and abs(float(fine_tuning.mean())) < 2  # not a flat -2


def test_16_bit_pictures_use_full_bit_depth_for_a_backbone_pretrained_on_hu(raw_store, tmp_path):
    root, files, _, _ = raw_store
    hu_backbone = backbone(tmp_path / "hu.pt", InputMapping({"mode": "full"}, 0.3, 0.2))
    data = TaskDataModule("folder", str(root / "pictures"), image_size=32, num_workers=0, backbone=str(hu_backbone))
    data.setup("fit")
    values = np.asarray(Image.open(data.task.splits["val"].items[0]), np.float32)
    torch.testing.assert_close(seen(data), torch.from_numpy((values / 65535 - 0.3) / 0.2))
    assert "16-bit pictures: /65535" in data.input_mapping().describe()


def test_dicom_goes_through_the_recorded_window(tmp_path):
    hu = np.linspace(-1200, 400, 2 * 16 * 16).reshape(2, 16, 16).round()
    for label, seed in (("a", 0), ("b", 1)):
        write_series(tmp_path / "task" / label, np.stack([hu[seed]] * 4), seed=seed)
    lung = backbone(tmp_path / "lung.pt", InputMapping({"mode": "window", "window_name": "lung"}, 0.3, 0.2))
    data = TaskDataModule("folder", str(tmp_path / "task"), image_size=16, num_workers=0, backbone=str(lung))
    data.setup("fit")
    label = data.task.splits["val"].labels[0]
    expected = (window(hu[label], -600, 1500) - 0.3) / 0.2  # the lung window, level -600 width 1500
    torch.testing.assert_close(seen(data), torch.from_numpy(expected), atol=1e-4, rtol=0)


def eight_bit_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def medmnist_npz(path: Path) -> Path:
    rng = np.random.default_rng(2)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("kind", ["folder", "medmnist"])
def test_8_bit_pictures_and_arrays_are_divided_by_255_then_normalised_as_recorded(kind, tmp_path):
    path = eight_bit_folder(tmp_path / "t") if kind == "folder" else medmnist_npz(tmp_path / "t.npz")
    recorded = backbone(tmp_path / "b.pt", InputMapping(RAW_RANGE, 0.3, 0.2, units="raw"))
    data = TaskDataModule(kind, str(path), image_size=16, num_workers=0, backbone=str(recorded))
    data.setup("fit")
    item = data.task.splits["val"].items[0]
    pixels = (np.asarray(Image.open(item), np.float32) if kind == "folder"
              else data.task.arrays["val"][item].astype(np.float32))
    torch.testing.assert_close(seen(data), torch.from_numpy((pixels / 255 - 0.3) / 0.2))


@pytest.mark.parametrize("checkpoint", [None, "nothing recorded"])
def test_random_init_and_files_that_record_nothing_get_the_project_default(checkpoint, tmp_path):
    path = eight_bit_folder(tmp_path / "t")
    file = str(backbone(tmp_path / "b.pt")) if checkpoint else None
    data = TaskDataModule("folder", str(path), image_size=16, num_workers=0, backbone=file)
    data.setup("fit")
    assert data.input_mapping() == DEFAULT and (DEFAULT.mean, DEFAULT.std) == (CT_FULL_MEAN, CT_FULL_STD)
    pixels = np.asarray(Image.open(data.task.splits["val"].items[0]), np.float32)
    torch.testing.assert_close(seen(data), torch.from_numpy((pixels / 255 - CT_FULL_MEAN) / CT_FULL_STD))
    if checkpoint is None:  # random init set otherwise: the values used, without a warning (nothing was pre-trained)
        windowed = TaskDataModule("folder", str(path), image_size=16, num_workers=0, mean=0.25, std=0.32)
        with warnings.catch_warnings():
            warnings.simplefilter("error", InputMappingWarning)
            windowed.setup("fit")
        assert (windowed.input_mapping().mean, windowed.input_mapping().std) == (0.25, 0.32)


def test_values_that_differ_from_the_backbones_are_used_with_a_warning(tmp_path, caplog):
    path = eight_bit_folder(tmp_path / "t")
    recorded = str(backbone(tmp_path / "b.pt", InputMapping({"mode": "full"}, 0.3, 0.2)))
    data = TaskDataModule("folder", str(path), image_size=16, num_workers=0, backbone=recorded, mean=0.5)
    with pytest.warns(InputMappingWarning, match="mean 0.5 instead of 0.3"):
        data.setup("fit")
    pixels = np.asarray(Image.open(data.task.splits["val"].items[0]), np.float32)
    torch.testing.assert_close(seen(data), torch.from_numpy((pixels / 255 - 0.5) / 0.2))
    same = TaskDataModule("folder", str(path), image_size=16, num_workers=0, backbone=recorded, std=0.2)
    caplog.clear()
    with caplog.at_level(logging.INFO), warnings.catch_warnings():
        warnings.simplefilter("error", InputMappingWarning)
        same.setup("fit")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("input mapping")]
    assert len(lines) == 1 and "recorded in the file, std set by the data options" in lines[0]
    with pytest.raises(ValueError, match="std must be positive"):
        TaskDataModule("folder", str(path), std=0.0)


def test_the_fine_tune_command_hands_the_checkpoint_to_the_data_side(tmp_path):
    path = eight_bit_folder(tmp_path / "t")
    recorded = backbone(tmp_path / "b.pt", InputMapping({"mode": "window", "window_name": "bone"}, 0.3, 0.2))
    cli = finetune_cli(["--data.kind", "folder", "--data.path", str(path), "--model.arch", "resnet18",
                        "--model.checkpoint", str(recorded), "--trainer.logger", "false"], run=False)
    assert cli.datamodule.hparams.backbone == str(recorded)
    assert cli.datamodule.input_mapping() == cli.model.load_report.input
    assert cli.datamodule.input_mapping().intensity == {"mode": "window", "window_name": "bone"}


def test_the_sweep_passes_the_data_options_to_every_run(tmp_path):
    path = eight_bit_folder(tmp_path / "t")
    config = SweepConfig({"t": ("folder", str(path))}, finetune=("--data.mean", "0.4", "--data.intensity",
                                                                 json.dumps({"mode": "window", "level": 40,
                                                                             "width": 400})))
    settings = config.settings()
    assert settings.data.mean == 0.4 and settings.data.intensity == {"mode": "window", "level": 40, "width": 400}
    assert config.settings("t").data.backbone is None  # random init: the project default, then 0.4
    recorded = str(backbone(tmp_path / "b.pt", InputMapping({"mode": "full"}, 0.3, 0.2)))
    cli = finetune_cli([*config.run_args("t", recorded), "--model.arch", "resnet18", "--trainer.logger", "false"],
                       run=False)
    with pytest.warns(InputMappingWarning):
        assert cli.datamodule.input_mapping().mean == 0.4


def test_released_files_get_the_studys_constants_and_others_the_default(tmp_path):
    body = {k: v for k, v in build_backbone("resnet18").state_dict().items() if not k.startswith("fc.")}
    torch.save({"module": body, "epoch": 1599}, tmp_path / "spark.pth")
    _, report = read_backbone(tmp_path / "spark.pth", arch="resnet18")
    assert report.input == STUDY_INPUTS["spark"] and "study's spark" in report.input_from
    torch.save(body, tmp_path / "plain.pt")
    assert read_backbone(tmp_path / "plain.pt", arch="resnet18")[1].input == DEFAULT
    lightning = {"state_dict": {f"backbone.{k}": v for k, v in body.items()},
                 "medssl": {"method": "byol", "arch": "resnet18"},
                 "datamodule_hyper_parameters": {"store": None, "intensity": RAW_RANGE, "views": [PLAIN_VIEW]}}
    torch.save(lightning, tmp_path / "last.ckpt")
    _, report = read_backbone(tmp_path / "last.ckpt", arch="resnet18")
    assert report.input == InputMapping(RAW_RANGE, 0.3, 0.2, 32, "raw")


@pytest.mark.parametrize("method", sorted(STUDY_INPUTS))
def test_the_studys_constants_are_those_of_its_configs(method):
    data = yaml.safe_load((ROOT / "Pre-Training" / "configs" / f"{method}.yaml").read_text())["data"]
    assert pretraining_input(data) == STUDY_INPUTS[method]


def test_a_broken_recorded_mapping_names_the_file(tmp_path):
    torch.manual_seed(0)
    path = export_backbone(build_backbone("resnet18"), tmp_path / "b.pt", method="byol", arch="resnet18",
                           input={"intensity": {"mode": "sideways"}, "mean": 0.3, "std": 0.2})
    with pytest.raises(CheckpointError, match=r"b\.pt: its recorded input mapping.*sideways"):
        read_backbone(path, arch="resnet18")
