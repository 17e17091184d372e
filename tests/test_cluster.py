"""Which cluster environment a run gets, whether its requeue is armed, and how the ranks agree on
the checkpoint to resume from: decisions a CPU run never takes, tested with the variables that
srun and torchrun set."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning_fabric.plugins.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)

from medssl.pretrain import cluster, resume
from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import method
from medssl.pretrain.resume import ResumeError, RunCheckpoints, run_checkpoints

SRUN = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pretrain", "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "localhost"}
# srun --ntasks-per-node=1 torchrun --nproc-per-node 1 ...: the step's one SLURM task runs torchrun
TORCHRUN = {"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "medssl"}
LAUNCHES = {
    "plain": ({}, LightningEnvironment, cluster.PLAIN),
    "srun": (SRUN, SLURMEnvironment, cluster.SLURM),
    "torchrun": (TORCHRUN, TorchElasticEnvironment, cluster.TORCHRUN),
    "torchrun inside SLURM": ({**SRUN, **TORCHRUN}, TorchElasticEnvironment, cluster.TORCHRUN),
    "SLURM interactive shell": ({**SRUN, "SLURM_JOB_NAME": "interactive"}, LightningEnvironment, cluster.PLAIN),
}


@pytest.fixture
def launched(monkeypatch):
    """Set one launcher's variables on a clean environment."""
    for key in list(os.environ):
        if key.startswith(("SLURM_", "TORCHELASTIC_")) or key in TORCHRUN:
            monkeypatch.delenv(key)

    def launch(variables: dict) -> None:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
    return launch


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_the_cluster_environment_follows_lightnings_order(launch, launched, tmp_path):
    variables, environment, kind = LAUNCHES[launch]
    launched(variables)
    assert cluster.launcher() == kind
    cli = pretrain_cli("simclr", args=["--config", str(method("simclr").quick_config), "--data.store",
                                       str(tmp_path / "store"), "--trainer.default_root_dir", str(tmp_path),
                                       "--trainer.strategy", "ddp", "--trainer.devices", "1",
                                       "--trainer.logger", "false"], run=False)
    chosen = cli.trainer.strategy.cluster_environment
    assert type(chosen) is environment
    if isinstance(chosen, SLURMEnvironment):
        assert not chosen.auto_requeue  # RunCheckpoints requeues, between steps


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_the_requeue_is_armed_only_where_the_signal_reaches_the_ranks(launch, launched, recwarn):
    variables, _, kind = LAUNCHES[launch]
    launched(variables)
    before = signal.getsignal(signal.SIGUSR1)
    callback = RunCheckpoints()
    trainer = SimpleNamespace(is_global_zero=True)
    try:
        callback.setup(trainer, None, "fit")
        armed = signal.getsignal(signal.SIGUSR1) == callback._on_signal
        assert armed == (kind == cluster.SLURM)
        warned = " ".join(str(w.message) for w in recwarn)
        if kind == cluster.TORCHRUN and "SLURM_JOB_ID" in variables:
            assert "torchrun inside SLURM job 4242" in warned
        if kind != cluster.SLURM and "SLURM_JOB_ID" in variables:  # inside SLURM, but not by srun
            assert "requeue not armed" in warned
        else:
            assert "requeue not armed" not in warned
        callback.teardown(trainer, None, "fit")
        assert signal.getsignal(signal.SIGUSR1) == before
    finally:
        signal.signal(signal.SIGUSR1, before)


class Broadcast:
    """A strategy whose broadcast hands every rank what rank 0 sent (``sent``)."""

    def __init__(self, sent=None):
        self.sent = sent

    def broadcast(self, obj, src=0):
        if self.sent is None:
            self.sent = obj
        return self.sent


def rank(run: Path, global_rank: int, strategy: Broadcast):
    return SimpleNamespace(is_global_zero=global_rank == 0, global_rank=global_rank,
                           default_root_dir=str(run), strategy=strategy)


def saved_run(run: Path, steps=(3, 6, 9)) -> list[Path]:
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    paths = []
    for step in steps:
        path = folder / f"epoch=0-step={step}.ckpt"
        torch.save({"global_step": step, "weights": torch.arange(100.0) * step}, path)
        paths.append(path)
    RunCheckpoints._link_last(paths[-1])
    return paths


def test_rank_zero_chooses_the_checkpoint_and_the_others_only_follow(tmp_path, monkeypatch):
    run = tmp_path / "run"
    paths = saved_run(run)
    paths[-1].write_bytes(paths[-1].read_bytes()[:-100])  # the newest truncated
    strategy = Broadcast()
    zero = RunCheckpoints()
    zero.expect_resume(bool(run_checkpoints(run)))
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint epoch=0-step=6.ckpt"):
        zero._agree_on_resume(rank(run, 0, strategy))
    last = RunCheckpoints.resume_path(run)
    assert os.path.samefile(last, paths[1])  # what every rank loads
    assert torch.load(last, weights_only=True)["global_step"] == 6

    def reads(path):
        raise AssertionError(f"rank 1 read {path}")

    monkeypatch.setattr(resume, "checkpoint_problem", reads)
    other = RunCheckpoints()
    other.expect_resume(True)
    other._agree_on_resume(rank(run, 1, strategy))  # nothing read: rank 0's choice


def test_a_rank_that_sees_another_folder_stops_with_the_reason(tmp_path):
    run = tmp_path / "run"
    saved_run(run)
    strategy = Broadcast()
    zero = RunCheckpoints()
    zero.expect_resume(True)
    zero._agree_on_resume(rank(run, 0, strategy))
    stale = RunCheckpoints()
    stale.expect_resume(False)  # its listing was empty: a stale cache of the shared file system
    with pytest.raises(ResumeError, match="rank 3 sees no checkpoint .* where rank 0 resumes from "
                                          "epoch=0-step=9.ckpt"):
        stale._agree_on_resume(rank(run, 3, strategy))


def test_every_rank_stops_when_rank_zero_finds_every_checkpoint_damaged(tmp_path):
    run = tmp_path / "run"
    for path in saved_run(run):
        path.write_bytes(b"")
    strategy = Broadcast()
    for global_rank in (0, 1):
        callback = RunCheckpoints()
        callback.expect_resume(True)
        with pytest.raises(ResumeError, match="every checkpoint"):
            callback._agree_on_resume(rank(run, global_rank, strategy))

