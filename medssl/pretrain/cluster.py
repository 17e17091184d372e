"""Which launcher started this process, and whether the SLURM requeue can be armed.

Lightning checks torchrun (TorchElastic) before SLURM, because torchrun is often run inside a
SLURM allocation (``srun --ntasks-per-node=1 torchrun --nproc-per-node 4 ...``); medssl follows
the same order. Only when SLURM itself started every rank (``srun``, one task per device) does
SLURM's pre-emption signal reach the training processes: under torchrun it reaches torchrun's
agent, which has no handler for it, so the requeue is not armed there and the run says so.
"""
from __future__ import annotations

import os

from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

TORCHRUN, SLURM, PLAIN = "torchrun", "slurm", "plain"


def launcher() -> str:
    """``torchrun``, ``slurm`` (ranks started by srun) or ``plain``, in Lightning's order."""
    if TorchElasticEnvironment.detect():
        return TORCHRUN
    if SLURMEnvironment.detect():
        return SLURM
    return PLAIN


def in_slurm_job() -> bool:
    """Inside a SLURM allocation, whoever started the ranks."""
    return "SLURM_JOB_ID" in os.environ


def requeue_armable() -> bool:
    """SLURM started the ranks, so its pre-emption signal reaches them."""
    return launcher() == SLURM


def cluster_plugin():
    """The cluster environment medssl sets, or None to leave Lightning's choice: under srun, a
    ``SLURMEnvironment`` without Lightning's own requeue (``RunCheckpoints`` requeues, between
    steps); under torchrun or plain, Lightning's own."""
    return SLURMEnvironment(auto_requeue=False) if requeue_armable() else None


def describe() -> str:
    """One line on how this process was launched and whether requeue is armed."""
    kind = launcher()
    if kind == SLURM:
        return (f"SLURM job {os.environ.get('SLURM_JOB_ID')} (srun, {os.environ.get('SLURM_NTASKS', '1')} "
                "tasks): requeue on SIGUSR1 armed")
    if kind == TORCHRUN:
        where = f" inside SLURM job {os.environ['SLURM_JOB_ID']}" if in_slurm_job() else ""
        return (f"torchrun{where} ({os.environ.get('WORLD_SIZE', '?')} processes): requeue not armed "
                "(the signal reaches torchrun's agent, not the ranks; launch with srun, one task per "
                "device, to have it)")
    if in_slurm_job():
        return (f"inside SLURM job {os.environ['SLURM_JOB_ID']} without srun (job name "
                f"{os.environ.get('SLURM_JOB_NAME', '?')!r}): requeue not armed")
    return "plain (no cluster launcher): requeue not armed"
