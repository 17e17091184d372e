import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medssl.data import SliceStore

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_make_phantom_writes_store_preview_and_tasks(tmp_path):
    out = tmp_path / "phantom"
    proc = run("Pre-Training/make_phantom.py", "--out", out, "--patients", "3", "--slices", "4",
               "--size", "32", "--task-size", "32", "--organ-per-class", "2",
               "--covid-per-class", "3", "--brain-per-class", "3", "--covid-extra-test", "2",
               "--brain-extra-test", "1")
    assert proc.returncode == 0, proc.stderr
    store = SliceStore(out / "store")
    assert len(store) == 12 and store.size == (32, 32)
    assert "12 of 32x32 int16 (HU)" in proc.stdout
    preview = out / "store_preview.png"
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.load(out / "tasks" / "organsmnist_phantom.npz")["train_images"].shape[1:] == (28, 28)
    assert (out / "tasks" / "covid" / "Data-split" / "COVID" / "trainCT_COVID.txt").exists()
    assert (out / "tasks" / "brain" / "train" / "b_with").is_dir()
    covid_test = (out / "tasks" / "covid" / "Data-split" / "COVID" / "testCT_COVID.txt").read_text().split()
    assert len(list((out / "tasks" / "covid" / "Images-processed" / "CT_COVID").iterdir())) == 3 + 2
    assert len(covid_test) >= 2  # the extra ones are all test images
    assert len(list((out / "tasks" / "brain").glob("*/*/*.png"))) == 2 * (3 + 1)
    again = run("Pre-Training/make_phantom.py", "--out", out, "--patients", "3", "--slices", "4",
                "--size", "32")
    assert again.returncode == 0 and "already there" in again.stdout


@pytest.mark.slow
def test_store_info_verifies_and_reports_damage(tmp_path):
    out = tmp_path / "phantom"
    assert run("Pre-Training/make_phantom.py", "--out", out, "--patients", "2", "--slices", "3",
               "--size", "16", "--no-tasks").returncode == 0
    ok = run("Pre-Training/store_info.py", out / "store", "--verify", "--preview", tmp_path / "p.png")
    assert ok.returncode == 0, ok.stderr
    assert "all shard checksums match" in ok.stdout and (tmp_path / "p.png").exists()
    shard = next((out / "store" / "shards").glob("*.npy"))
    shard.write_bytes(shard.read_bytes()[:-10])
    bad = run("Pre-Training/store_info.py", out / "store")
    assert bad.returncode == 1
    assert shard.name in bad.stderr and "damaged" in bad.stderr


def test_torch_and_torchvision_are_a_working_pair():
    import torch
    import torchvision

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    model = torchvision.models.resnet18(num_classes=3).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
