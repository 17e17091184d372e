"""Exported backbones in the formats people load: .pt, .safetensors, timm's folder."""
import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from medssl.checkpoints import CheckpointError, CheckpointFormat, read_backbone
from medssl.checkpoints.export import export_backbone
from medssl.checkpoints.loader import SAFETENSORS
from medssl.data.input_mapping import InputMapping
from medssl.models.backbone import build_backbone

ROOT = Path(__file__).resolve().parents[1]
FED = InputMapping({"mode": "window", "level": 40, "width": 400}, 0.3, 0.2, 64)


def trained_looking(arch: str) -> torch.nn.Module:
    """A backbone whose running statistics differ from a fresh one's."""
    torch.manual_seed(0)
    backbone = build_backbone(arch)
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return backbone


def only_fc_missing(model: torch.nn.Module, state: dict) -> None:
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []


def test_safetensors_export_loads_into_torchvision_and_back_through_our_loader(tmp_path):
    backbone = trained_looking("resnet18")
    path = export_backbone(backbone, tmp_path / "byol.safetensors", "safetensors", method="byol",
                           arch="resnet18", epochs=3, input=FED.as_dict(), config={"data": {"views": [{"size": 64}]}})
    state = load_file(path)
    model = torchvision.models.resnet18(num_classes=4)
    only_fc_missing(model, state)
    assert torch.equal(model.layer3[0].bn1.running_var, backbone.layer3[0].bn1.running_var)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["format"] == "pt"
    recorded = json.loads(metadata["medssl"])
    assert recorded["config"] == {"data": {"views": [{"size": 64}]}} and recorded["epochs"] == 3
    ours, report = read_backbone(path, arch=None)
    assert report.format is CheckpointFormat.MEDSSL_EXPORT and report.method == "byol"
    assert report.unpickling == SAFETENSORS and report.input == FED and report.input_from == "recorded in the file"
    assert all(torch.equal(ours[k], v) for k, v in backbone.state_dict().items())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.slow
def test_timm_export_is_a_folder_timm_builds(arch, tmp_path):
    backbone = trained_looking(arch)
    folder = export_backbone(backbone, tmp_path / f"{arch}_timm", "timm", method="spark", arch=arch,
                             input=FED.as_dict())
    only_fc_missing(timm.create_model(arch, pretrained=False, num_classes=5), load_file(folder / "model.safetensors"))
    if arch == "resnet50":  # key names only; the rest is the same for both
        return
    model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=5)
    assert torch.equal(model.layer4[1].bn2.running_mean, backbone.layer4[1].bn2.running_mean)
    config = timm.data.resolve_data_config({}, model=model)
    assert config["mean"] == [FED.mean] * 3 and config["std"] == [FED.std] * 3
    assert tuple(config["input_size"]) == (3, FED.size, FED.size)
    _, report = read_backbone(folder, arch=None)  # the folder names its weights
    assert report.method == "spark" and report.arch == arch and report.input == FED
    from medssl.cli import main as medssl

    assert medssl(["inspect", str(folder)]) == 0  # a timm folder is inspected as a checkpoint, not a store


def test_unreadable_safetensors_metadata_names_the_file(tmp_path):
    save_file({k: v.contiguous() for k, v in build_backbone("resnet18").state_dict().items()},
              str(tmp_path / "odd.safetensors"), metadata={"medssl": "{not json"})
    with pytest.raises(CheckpointError, match=r"odd\.safetensors: not a readable safetensors file \(JSONDecodeError"):
        read_backbone(tmp_path / "odd.safetensors", arch=None)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match=r"x\.safetensors: no ResNet backbone found"):
        read_backbone(tmp_path / "x.safetensors", arch=None)


@pytest.mark.slow
def test_export_command_writes_each_format(tmp_path):
    lightning = {"state_dict": {f"backbone.{k}": v for k, v in trained_looking("resnet18").state_dict().items()},
                 "medssl": {"method": "byol", "arch": "resnet18"}, "epoch": 2, "global_step": 10,
                 "hyper_parameters": {}, "datamodule_hyper_parameters": {"views": [{"size": 48}]}}
    torch.save(lightning, tmp_path / "last.ckpt")
    spec = importlib.util.spec_from_file_location("export_script", ROOT / "Pre-Training" / "export.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for fmt, name in (("safetensors", "byol_backbone_step10.safetensors"), ("timm", "byol_backbone_step10_timm")):
        assert script.main([str(tmp_path / "last.ckpt"), "--format", fmt]) == 0
        _, report = read_backbone(tmp_path / name, arch=None)
        assert report.format is CheckpointFormat.MEDSSL_EXPORT and report.metadata["steps"] == 10
        assert report.input.size == 48


def test_a_safetensors_export_gets_the_users_file_mode(tmp_path):
    previous = os.umask(0o027)  # a group that shares the runs reads them
    try:
        path = export_backbone(trained_looking("resnet18"), tmp_path / "b.safetensors", "safetensors", method="byol",
                               arch="resnet18")
        pt = export_backbone(trained_looking("resnet18"), tmp_path / "b.pt", method="byol", arch="resnet18")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 == stat.S_IMODE(pt.stat().st_mode)
