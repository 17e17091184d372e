"""The default precision follows what the GPU computes natively (a CPU run never takes it)."""
import pytest
import torch
import yaml

from medssl.precision import default_precision
from medssl.pretrain.methods import method, method_names


@pytest.mark.parametrize("gpu, capability, expected", [
    (False, None, "32-true"),
    (True, (7, 0), "16-mixed"),  # V100: bf16 only emulated, though is_bf16_supported() says True
    (True, (7, 5), "16-mixed"),  # T4
    (True, (8, 0), "bf16-mixed"),  # A100
    (True, (9, 0), "bf16-mixed"),  # H100
])
def test_bf16_only_where_the_gpu_computes_it(gpu, capability, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert default_precision() == expected


@pytest.mark.parametrize("name", method_names())
def test_full_configs_leave_the_precision_to_the_device(name):
    config = yaml.safe_load(method(name).config.read_text())
    assert "precision" not in config["trainer"]
