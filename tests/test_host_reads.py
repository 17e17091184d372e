"""What a training step makes the host read back from the device, counted on CPU in a real
run (``medssl.host_reads.HostReads``): nothing, once the run has started. The progress bar and
the logger read the loss only on the steps they write (every ``log_every_n_steps``)."""
from __future__ import annotations

import json

import pytest
import torch

from medssl.host_reads import HostReads
from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import method

from conftest import phantom_store
from registered import tiny_arguments

pytestmark = pytest.mark.slow  # left out of make test-fast

# SparK with SGD: torch's AdamW on a CPU reads its step counts (host tensors: on a GPU the run
# takes the fused kernels, which keep them on the device)
OPTIMIZER = {"spark": ["--model.optimizer.name", "sgd"]}
# Views made on the device (here the CPU), without blur: kornia's blur reads its sigmas, which
# the views draw on the host (a read of a CPU tensor, no wait on a GPU; test_fast_path runs the
# device views on the meta device, where a read of a device value fails)
VIEWS = {"byol": [{"size": 32, "count": 2, "rotate_p": 0.5, "jitter_p": 0.8, "noise_p": 0.5}],
         "spark": [{"size": 64, "count": 1}]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=8, size=32)  # 64 slices: 16 steps of 4


def reads_of_a_run(name: str, store, folder, steps: int, every: int = 50):
    args = ["fit", "--config", str(method(name).quick_config), "--data.store", str(store),
            "--data.views", json.dumps(VIEWS[name]), "--data.batch_size", "4",
            "--data.num_workers", "0", "--data.augment_on", "device",
            "--trainer.max_epochs", "-1", "--trainer.max_steps", str(steps),
            "--trainer.log_every_n_steps", str(every), "--trainer.enable_model_summary", "false",
            "--checkpoint.every_n_steps", "0", "--checkpoint.every_n_epochs", "0",
            "--trainer.default_root_dir", str(folder), *tiny_arguments(name), *OPTIMIZER.get(name, [])]
    with HostReads() as reads:
        cli = pretrain_cli(name, args=args)
    reads.logged = set(cli.trainer.callback_metrics)
    return reads


@pytest.mark.parametrize("name", ["byol", "spark"])
def test_a_step_reads_nothing_back_with_the_progress_bar_on(name, store, tmp_path):
    torch.manual_seed(0)
    short = reads_of_a_run(name, store, tmp_path / "short", steps=3).ops
    long = reads_of_a_run(name, store, tmp_path / "long", steps=11).ops
    per_step = {op: (long[op] - short[op]) / 8 for op in set(long) | set(short)}
    assert all(count == 0 for count in per_step.values()), per_step


def test_schedule_values_are_logged_on_the_logger_s_steps_only(store, tmp_path):
    """BYOL's tau is a Python float: logged every step, it would be copied to the device every step."""
    assert {"train/loss", "train/tau"} <= reads_of_a_run("byol", store, tmp_path / "every", steps=3, every=1).logged
    logged = reads_of_a_run("byol", store, tmp_path / "every-50", steps=3).logged
    assert "train/loss" in logged and "train/tau" not in logged
