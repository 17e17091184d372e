import argparse
import hashlib
import importlib.util
import os
import pathlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import timm
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset

from medssl.checkpoints import (
    CHECKPOINTS_ENV,
    RELEASED,
    CheckpointError,
    CheckpointFormat,
    checkpoint_dir,
    load_backbone,
    read_backbone,
)
from medssl.checkpoints.export import export_backbone
from medssl.data.input_mapping import IMAGENET_INPUT
from medssl.downstream.phantom_tasks import write_phantom_tasks
from medssl.downstream.sweep import SweepConfig, check_inputs, run_sweep
from medssl.pretrain.methods import method_names

from conftest import RangeHandler, task_counts
from registered import build, quick_views, view_sizes, without_warmup

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    for m in model.modules():  # make running statistics distinguishable from defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return {k: v for k, v in model.state_dict().items()}


def trunk(sd):
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


def layouts(sd):
    """Each released / common format, built from one ResNet-50 state dict."""
    body = trunk(sd)
    head = {"0.weight": torch.randn(2048, 2048), "2.weight": torch.randn(128, 2048)}
    ten_classes = {**body, "fc.weight": torch.randn(10, 2048), "fc.bias": torch.randn(10)}
    return {
        "SparK release": ({"module": body, "arch": "resnet50", "epoch": 1599, "is_pretrain": True},
                          "spark"),
        "SwAV release": ({"state_dict": {**{f"model.{k}": v for k, v in body.items()},
                                         **{f"model.projection_head.{k}": v for k, v in head.items()},
                                         "model.prototypes.weight": torch.randn(500, 128)},
                          "hyper_parameters": {"args": argparse.Namespace(lr=0.15)}}, "swav"),
        "MoCo release": ({"state_dict": {**{f"encoder_q.{k}": v for k, v in body.items()},
                                         **{f"encoder_q.fc.{k}": v for k, v in head.items()},
                                         **{f"encoder_k.{k}": v + 1 for k, v in body.items()},
                                         "queue": torch.randn(128, 65536),
                                         "queue_ptr": torch.zeros(1, dtype=torch.long)}}, "mocov2"),
        "BYOL release": ({"state_dict": {**{f"online_network.encoder.{k}": v for k, v in body.items()},
                                         **{f"online_network.projector.{k}": v for k, v in head.items()},
                                         **{f"target_network.encoder.{k}": v * 0 for k, v in body.items()}},
                          "epoch": np.int64(3), "root": pathlib.PosixPath("/data")}, "byol"),
        "torchvision": (ten_classes, None),
        "ImageNet classifier": (sd, "imagenet"),  # torchvision's 1000-class fc
        "DDP module.": ({"state_dict": {f"module.{k}": v for k, v in ten_classes.items()}}, None),
        "lightly backbone.": ({"state_dict": {f"backbone.{k}": v for k, v in body.items()}}, None),
    }


@pytest.mark.parametrize("name", ["SparK release", "SwAV release", "MoCo release", "BYOL release",
                                  "torchvision", "ImageNet classifier", "DDP module.", "lightly backbone."])
@pytest.mark.slow
def test_every_format_loads_exactly(name, reference, tmp_path):
    payload, method = layouts(reference)[name]
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    model, report = load_backbone(path, num_classes=3)
    assert report.method == method
    assert sorted(report.missing) == ["fc.bias", "fc.weight"] and report.loaded == 318
    state = model.state_dict()
    for key, value in trunk(reference).items():
        assert torch.equal(state[key], value), key
    assert model.fc.out_features == 3


def test_lightly_sequential_backbone_layout(reference, tmp_path):
    seq = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-1])
    names = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    sd = {f"backbone.{names[k.split('.')[0]]}{k[len(k.split('.')[0]):]}": v
          for k, v in trunk(reference).items()}
    assert set(sd) == {f"backbone.{k}" for k in seq.state_dict()}
    torch.save({"state_dict": sd}, tmp_path / "lightly.ckpt")
    model, report = load_backbone(tmp_path / "lightly.ckpt")
    assert torch.equal(model.layer3[1].conv2.weight, reference["layer3.1.conv2.weight"])
    assert report.ignored == {}


def test_timm_resnet_loads(tmp_path):
    net = timm.create_model("resnet50", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "timm.pth")
    model, report = load_backbone(tmp_path / "timm.pth")
    assert torch.equal(model.layer2[0].downsample[0].weight, net.layer2[0].downsample[0].weight)
    assert report.ignored == {"fc": 2}


def test_heads_and_second_encoders_are_reported_as_ignored(reference, tmp_path):
    payload, _ = layouts(reference)["MoCo release"]
    torch.save(payload, tmp_path / "moco.ckpt")
    _, report = read_backbone(tmp_path / "moco.ckpt")
    assert report.ignored == {"encoder_q.fc": 2, "encoder_k": 318, "queue": 1, "queue_ptr": 1}
    assert "restricted" not in report.unpickling  # plain tensors: torch's weights_only path


def test_wrong_prefix_is_an_error_not_a_silent_partial_load(reference, tmp_path):
    torch.save({"state_dict": {f"net.trunk.{k}": v for k, v in reference.items()}}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="no ResNet backbone found.*net.trunk"):
        load_backbone(tmp_path / "x.ckpt")
    partial = {k: v for k, v in trunk(reference).items() if not k.startswith("layer4")}
    torch.save({"module": partial}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing, e\.g\. \['layer4.*Nothing was loaded"):
        load_backbone(tmp_path / "partial.pth")


def test_shape_mismatch_names_the_key(reference, tmp_path):
    sd = dict(trunk(reference))
    sd["conv1.weight"] = torch.randn(64, 1, 7, 7)
    torch.save(sd, tmp_path / "grey.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch: conv1.weight: \(64, 1, 7, 7\)"):
        load_backbone(tmp_path / "grey.pth")


def test_wrong_architecture_is_named(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="holds a resnet18 backbone.*resnet50 was asked"):
        load_backbone(tmp_path / "r18.pth", arch="resnet50")
    model, report = load_backbone(tmp_path / "r18.pth", arch=None)
    assert report.arch == "resnet18" and model.fc.in_features == 512


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_malicious_pickle_is_not_executed(reference, tmp_path):
    marker = tmp_path / "pwned"
    payload, _ = layouts(reference)["SparK release"]
    torch.save({**payload, "extra": Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"calls (posix|os)\.system.*--trust-pickle"):
        load_backbone(tmp_path / "evil.pth")
    assert not marker.exists()
    proc = subprocess.run([sys.executable, str(ROOT / "checkpoints" / "describe.py"),
                           str(tmp_path / "evil.pth")], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 1 and "NO" in proc.stdout and not marker.exists()


class TrainingConfig:  # a class of some training script, unknown to the loader
    def __init__(self):
        self.lr, self.path = 0.1, pathlib.Path("/data")


def test_harmless_unknown_classes_are_stubbed_not_refused(reference, tmp_path):
    payload, _ = layouts(reference)["SwAV release"]
    payload = {**payload, "hyper_parameters": {"cfg": TrainingConfig(), "n": np.float32(2.5)}}
    torch.save(payload, tmp_path / "cfg.ckpt", pickle_protocol=2)
    model, report = load_backbone(tmp_path / "cfg.ckpt")
    assert "stubbed: test_checkpoints.TrainingConfig" in report.unpickling
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])


class FixedViews(Dataset):
    def __init__(self, sizes):
        self.x = [torch.randn(4, 3, size, size) for size in sizes]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return [v[i] for v in self.x]


@pytest.mark.parametrize("method", method_names())
@pytest.mark.slow
def test_our_checkpoints_and_exports_round_trip(method, tmp_path):
    module = build(method, optimizer=without_warmup(method))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    views = FixedViews(view_sizes(quick_views(method)))
    trainer.fit(module, DataLoader(views, batch_size=4))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    export_backbone(module.backbone, tmp_path / "export.pt", method=module.method_name, arch="resnet18")
    for name, fmt in (("last.ckpt", CheckpointFormat.MEDSSL_LIGHTNING),
                      ("export.pt", CheckpointFormat.MEDSSL_EXPORT)):
        model, report = load_backbone(tmp_path / name, arch="resnet18")
        assert report.format is fmt and report.method == module.method_name
        assert report.unpickling == "weights_only"
        for key, value in module.backbone.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key


def download(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "checkpoints" / "download.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_download_resumes_verifies_and_checks_keys(server, tmp_path):
    served, base = server
    sd = {f"model.{k}": v for k, v in trunk(torchvision.models.resnet18().state_dict()).items()}
    torch.save({"state_dict": sd}, served / "swav.ckpt")
    data = (served / "swav.ckpt").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    out = tmp_path / "dl"
    out.mkdir()
    (out / "swav_study.ckptABCDEFGH.part").write_bytes(data[: len(data) // 2])  # interrupted earlier
    proc = download("swav", "--url", f"{base}/swav.ckpt", "--dir", out, "--sha256", digest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "swav_study.ckpt").read_bytes() == data
    assert f"bytes={len(data) // 2}-" in RangeHandler.ranges
    assert "SwAV release" in proc.stdout and "ready" in proc.stdout
    again = download("swav", "--url", f"{base}/swav.ckpt", "--dir", out, "--sha256", digest)
    assert again.returncode == 0 and "already there" in again.stdout


@pytest.mark.slow
def test_download_rejects_a_wrong_checksum(server, tmp_path):
    served, base = server
    (served / "spark.pth").write_bytes(b"not the file you want")
    proc = download("spark", "--url", f"{base}/spark.pth", "--dir", tmp_path, "--sha256", "0" * 64)
    assert proc.returncode == 1 and "checksum mismatch" in proc.stderr
    assert not (tmp_path / "spark_study.pth").exists() and (tmp_path / "spark_study.pth.bad").exists()


@pytest.mark.slow
def test_download_offline_error_is_clear(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = download("byol", "--url", f"http://127.0.0.1:{port}/byol.ckpt", "--dir", tmp_path)
    assert proc.returncode == 1
    assert "cannot download" in proc.stderr and "Offline?" in proc.stderr


def test_released_name_not_downloaded_yet(tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    with pytest.raises(CheckpointError, match="not downloaded yet.*download.py spark"):
        load_backbone("spark")


def test_released_names_are_looked_up_in_the_working_directory_not_the_package(
        reference, tmp_path, monkeypatch):
    monkeypatch.delenv(CHECKPOINTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert checkpoint_dir() == tmp_path / "checkpoints"
    with pytest.raises(CheckpointError, match=f"expected at {tmp_path / 'checkpoints'}"):
        read_backbone("spark")
    payload, _ = layouts(reference)["SparK release"]
    (tmp_path / "checkpoints").mkdir()
    torch.save(payload, tmp_path / "checkpoints" / "spark_study.pth")
    assert read_backbone("spark")[1].format is CheckpointFormat.SPARK_RELEASE
    elsewhere = tmp_path / "elsewhere"  # an explicit folder comes before the variable and cwd
    monkeypatch.setenv(CHECKPOINTS_ENV, str(elsewhere))
    assert checkpoint_dir() == elsewhere and checkpoint_dir(tmp_path) == tmp_path
    with pytest.raises(CheckpointError, match="not downloaded yet"):
        read_backbone("spark")
    assert read_backbone("spark", folder=tmp_path / "checkpoints")[1].method == "spark"


@pytest.mark.slow
def test_describe_says_whether_it_will_load(reference, tmp_path):
    payload, _ = layouts(reference)["BYOL release"]
    (tmp_path / "checkpoints").mkdir()
    torch.save(payload, tmp_path / "checkpoints" / "byol_study.ckpt")
    env = {k: v for k, v in os.environ.items() if k != CHECKPOINTS_ENV}
    proc = subprocess.run([sys.executable, str(ROOT / "checkpoints" / "describe.py"), "byol"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "BYOL release" in proc.stdout and "resnet50" in proc.stdout
    assert "will it load? YES" in proc.stdout and "target_network (318)" in proc.stdout


def download_main(argv):
    """checkpoints/download.py's main(), in this process (so a test can patch the registry)."""
    spec = importlib.util.spec_from_file_location("download_script", ROOT / "checkpoints" / "download.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main([str(a) for a in argv])


def torchvision_style(folder: Path, prefix: str | None = None) -> Path:
    """A ResNet-18 ImageNet-layout state dict saved as torchvision names its weight files:
    ``resnet18-<sha256 prefix>.pth`` (the real prefix unless ``prefix`` is given)."""
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet18.pth")
    digest = hashlib.sha256((folder / "resnet18.pth").read_bytes()).hexdigest()
    return (folder / "resnet18.pth").rename(folder / f"resnet18-{prefix or digest[:8]}.pth")


def test_imagenet_downloads_checks_the_prefix_in_its_name_and_loads(server, tmp_path, monkeypatch, capsys):
    served, base = server
    file = torchvision_style(served)
    entry = RELEASED["imagenet-resnet18"]
    monkeypatch.setitem(RELEASED, entry.name, replace(entry, filename=file.name, address=f"{base}/{file.name}"))
    assert download_main([entry.name, "--dir", tmp_path]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {hashlib.sha256(file.read_bytes()).hexdigest()}" in out and "ImageNet classifier" in out
    model, report = load_backbone(entry.name, arch="resnet18", num_classes=2, folder=tmp_path)
    assert report.method == "imagenet" and report.format is CheckpointFormat.IMAGENET
    assert report.input == IMAGENET_INPUT and report.ignored == {"fc": 2}
    assert torch.equal(model.layer4[1].conv2.weight, torch.load(file)["layer4.1.conv2.weight"])


def test_imagenet_download_with_a_wrong_prefix_names_the_file(server, tmp_path, capsys):
    served, base = server
    fake = torchvision_style(served, prefix="f37072fd")  # torchvision's name, but not its file
    assert download_main(["imagenet-resnet18", "--url", f"{base}/{fake.name}", "--dir", tmp_path]) == 1
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth: checksum mismatch" in err and "expected one starting with f37072fd" in err
    assert (tmp_path / "resnet18-f37072fd.pth.bad").exists() and not (tmp_path / "resnet18-f37072fd.pth").exists()


def test_released_imagenet_weights_are_torchvisions():
    for name, arch, weights in (("imagenet", "resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
                                ("imagenet-resnet18", "resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1)):
        entry = RELEASED[name]
        assert entry.url == weights.url and entry.arch == arch and entry.method == "imagenet"
        assert weights.url.endswith(f"/{arch}-{entry.expected_sha256}.pth") and len(entry.expected_sha256) == 8


def test_a_released_name_of_another_arch_says_which_to_use(reference, tmp_path):
    torch.save(reference, tmp_path / RELEASED["imagenet"].filename)
    with pytest.raises(CheckpointError, match="holds a resnet50.*or the released imagenet-resnet18"):
        read_backbone("imagenet", arch="resnet18", folder=tmp_path)
    assert read_backbone("imagenet", folder=tmp_path)[1].method == "imagenet"


def test_the_sweep_runs_imagenet_by_name_beside_random(tmp_path, monkeypatch):
    torchvision_style(tmp_path).rename(tmp_path / RELEASED["imagenet-resnet18"].filename)
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    tasks = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(4, 1, 1), progress=False)
    config = SweepConfig({"organ": ("medmnist", str(tasks["organ"]))}, ("random", "imagenet-resnet18"),
                         fractions=(1.0,), seeds=(0,),
                         finetune=("--model.mode", "knn", "--model.arch", "resnet18", "--data.image_size", "32",
                                   "--data.num_workers", "0", "--trainer.accelerator", "cpu"))
    assert check_inputs(config) == {"random": "random", "imagenet-resnet18": "imagenet"}
    config.checkpoints = ("imagenet-resnet18",)  # random's run is the sweep's own test
    table = run_sweep(config, tmp_path / "results.csv", progress=False)
    assert list(zip(table.checkpoint, table.method)) == [("imagenet-resnet18", "imagenet")]


def test_a_sweep_without_an_architecture_runs_random_init_on_the_checkpoints(tmp_path, monkeypatch):
    torchvision_style(tmp_path).rename(tmp_path / RELEASED["imagenet-resnet18"].filename)
    monkeypatch.setenv(CHECKPOINTS_ENV, str(tmp_path))
    tasks = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(4, 1, 1), progress=False)
    config = SweepConfig({"organ": ("medmnist", str(tasks["organ"]))}, ("random", "imagenet-resnet18"),
                         fractions=(1.0,), seeds=(0,), finetune=("--model.mode", "knn"))
    check_inputs(config)
    assert config.settings().model.arch == "resnet18"  # every run, random init included
    other = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), other)
    mixed = SweepConfig(config.tasks, ("imagenet-resnet18", str(other)), finetune=("--model.mode", "knn"))
    with pytest.raises(CheckpointError, match="different backbones.*resnet18.*resnet50"):
        check_inputs(mixed)
