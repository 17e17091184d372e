"""Runs that survive a cluster: killed with SIGKILL, requeued by SLURM, a damaged checkpoint.

Every method is run three ways with the same command: uninterrupted; killed after its first
mid-run checkpoints, then run again; and, in that second run, asked to requeue by SIGUSR1 (with
the SLURM environment and a stand-in ``scontrol``), then run again. The resumed runs must go on
from their checkpoint (not step 0) and match the uninterrupted run step for step: learning
rate, BYOL's tau, the queues and the loss.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medssl.pretrain.cli import pretrain_cli
from medssl.pretrain.methods import method_names
from medssl.pretrain.resume import (
    AtomicCheckpointIO,
    ResumeError,
    RunCheckpoints,
    checkpoint_problem,
    find_resume_checkpoint,
    run_checkpoints,
)

import step_record
from conftest import phantom_store
from registered import quick_views, tiny_arguments

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
VIEWS = {
    "swav": [{"size": 32, "count": 2, "scale": [0.5, 1.0], "jitter_p": 0.8, "blur_p": 0.5},
             {"size": 16, "count": 2, "scale": [0.1, 0.3]}],
    "mocov2": [{"size": 32, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "noise_p": 0.5,
                "jitter_p": 0.8}],
    "byol": [{"size": 32, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "noise_p": 0.5}],
    "spark": [{"size": 64, "count": 1, "scale": [0.67, 1.0], "hflip_p": 0.5}],
    "dino": [{"size": 32, "count": 2, "scale": [0.5, 1.0], "jitter_p": 0.8, "blur_p": 0.5},
             {"size": 16, "count": 2, "scale": [0.1, 0.3]}],
    "simclr": [{"size": 32, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "noise_p": 0.5}],
    "barlowtwins": [{"size": 32, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "noise_p": 0.5}],
    "vicreg": [{"size": 32, "count": 2, "scale": [0.2, 1.0], "rotate_p": 0.5, "noise_p": 0.5}],
}
# the methods' tiny settings, and: a MoCo queue that first wraps in the second epoch, SparK's drop path
CHANGES = {"mocov2": dict(queue_length=40), "spark": dict(drop_path=0.1)}
STEPS = 8  # 32 slices / batch 8 = 4 steps an epoch: 2 epochs
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pretrain",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
             "SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "localhost"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return phantom_store(tmp_path_factory, patients=4, size=32)


def command(method, store, run_dir, record, *extra) -> list[str]:
    """The README's command (``fit --config ... --data.store ... --trainer.default_root_dir``)
    with the sizes of a test, recording every step."""
    return ["fit", "--config", str(ROOT / "Pre-Training" / "configs" / f"{method}_quick.yaml"),
            "--data.store", str(store), "--trainer.default_root_dir", str(run_dir),
            "--data.views", json.dumps(VIEWS.get(method) or quick_views(method)), "--data.batch_size", "8",
            "--data.num_workers", "0", "--data.augment_on", "device",
            *tiny_arguments(method, **CHANGES.get(method, {})),
            "--trainer.max_epochs", str(STEPS // 4), "--trainer.log_every_n_steps", "1",
            "--checkpoint.every_n_steps", "3", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.callbacks+=step_record.StepRecord", "--trainer.callbacks.path", str(record),
            *extra]


def kill_after_checkpoints(args, run_dir: Path, count: int) -> int:
    """Run ``Pre-Training/<method>.py`` in a subprocess; SIGKILL it once ``count`` checkpoints
    exist. Returns the process's exit code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if len(run_checkpoints(run_dir)) >= count:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run (rc {proc.returncode}): {err[-2000:]}"
    return proc.returncode


def fake_scontrol(folder: Path) -> Path:
    """``scontrol`` that appends its arguments to ``scontrol.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/scontrol.log"\n')
    script.chmod(0o755)
    return folder / "scontrol.log"


@pytest.mark.parametrize("method", method_names())
@pytest.mark.slow
def test_killed_then_requeued_run_goes_on_as_if_uninterrupted(method, store, tmp_path, monkeypatch):
    reference = tmp_path / "reference.jsonl"
    pretrain_cli(method, args=command(method, store, tmp_path / "ref", reference,  # no saves needed
                                   "--checkpoint.every_n_steps", "0", "--checkpoint.every_n_epochs", "0"))
    expected = step_record.read(reference)
    assert sorted(expected) == list(range(1, STEPS + 1))

    # 1. SIGKILL once two checkpoints exist; the newer one is then truncated, as by a crash
    run, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = command(method, store, run, record)
    script = ROOT / "Pre-Training" / f"{method}.py"  # the README's door; any method: -m medssl.pretrain
    door = [str(script)] if script.exists() else ["-m", "medssl.pretrain", method]
    kill_after_checkpoints([*door, *args], run, count=2)
    newest, previous = run_checkpoints(run)[:2]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    resume_step = int(previous.stem.split("step=")[1])
    assert resume_step > 0
    lines_before = len(record.read_text().splitlines())

    # 2. the same command again, inside a SLURM job: it goes on from the previous checkpoint,
    #    and at step 5 SLURM's time-limit signal makes it save, requeue itself and stop
    log = fake_scontrol(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{log.parent}{os.pathsep}{os.environ['PATH']}")
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    requeue_at = 5  # mid-epoch
    with pytest.warns(UserWarning, match=f"{newest.name}: not a whole checkpoint"):
        second = pretrain_cli(method, args=args + ["--trainer.callbacks+=step_record.SendSignal",
                                                "--trainer.callbacks.at_step", str(requeue_at)])
    assert second.trainer.global_step == requeue_at
    assert log.read_text().split() == ["requeue", "4242"]
    assert not (run / f"{method}_backbone.pt").exists()  # the requeued run exports at its real end
    assert f"step={requeue_at}.ckpt" in run_checkpoints(run)[0].name
    first_resumed = json.loads(record.read_text().splitlines()[lines_before])
    assert first_resumed["step"] == resume_step + 1  # from the checkpoint, not from step 0

    # 3. the requeued job runs the same command: from step 5 to the end
    third = pretrain_cli(method, args=args)
    assert third.trainer.global_step == STEPS
    assert len(run_checkpoints(run)) == 2  # the newest two are kept

    rows = step_record.read(record)
    assert sorted(rows) == list(range(1, STEPS + 1))
    for step in range(resume_step + 1, STEPS + 1):
        got, want = rows[step], expected[step]
        assert (got["epoch"], got["batch"]) == (want["epoch"], want["batch"]), step
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-12), step
        if "tau" in want:
            assert got["tau"] == pytest.approx(want["tau"], rel=1e-12), step
        assert got["queue_position"] == want["queue_position"], step
        assert got["queue_sum"] == pytest.approx(want["queue_sum"], rel=1e-5, abs=1e-5), step
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6), step
    ours = torch.load(run / f"{method}_backbone.pt", weights_only=True)["state_dict"]
    theirs = torch.load(tmp_path / "ref" / f"{method}_backbone.pt", weights_only=True)["state_dict"]
    for key, value in theirs.items():
        assert torch.allclose(ours[key].float(), value.float(), rtol=1e-4, atol=1e-5), key


def test_a_damaged_checkpoint_is_named_and_the_previous_one_used(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    paths = []
    for step in (3, 6, 9):
        path = folder / f"epoch=0-step={step}.ckpt"
        torch.save({"global_step": step, "weights": torch.arange(1000.0) * step}, path)
        paths.append(path)
    assert find_resume_checkpoint(tmp_path) == paths[2]
    paths[2].write_bytes(paths[2].read_bytes()[:-100])  # truncated
    data = bytearray(paths[1].read_bytes())  # one byte of the tensor data flipped
    at = data.find(struct.pack("<f", 500.0 * 6))
    assert at > 0
    data[at] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    assert "truncated" in checkpoint_problem(paths[2])
    assert checkpoint_problem(paths[1]) is not None
    with pytest.warns(UserWarning) as warned:
        assert find_resume_checkpoint(tmp_path) == paths[0]
    text = " ".join(str(w.message) for w in warned)
    assert paths[2].name in text and paths[1].name in text
    paths[0].write_bytes(b"")
    assert checkpoint_problem(paths[0]) == "empty file"
    with pytest.raises(ResumeError, match="every checkpoint") as err:
        find_resume_checkpoint(tmp_path)
    assert all(str(p) in str(err.value) for p in paths)
    assert find_resume_checkpoint(tmp_path / "new-run") is None


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "epoch=0-step=3.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 3}, path)
    before = path.read_bytes()

    def dies_half_way(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process ends here

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 6}, path)
    assert path.read_bytes() == before
    assert checkpoint_problem(path) is None
    assert run_checkpoints(tmp_path) == [path]  # the .partial left behind is not a candidate


@pytest.mark.slow
def test_ddp_ranks_agree_on_the_requeue_step(store, tmp_path):
    """Two processes launched as srun would (SLURM_PROCID 0 and 1): SIGUSR1 reaches both at
    their own moments; they agree on one step, one checkpoint is written, ``scontrol requeue``
    is called once, and the same command run again finishes the run from there."""
    import socket

    log = fake_scontrol(tmp_path / "bin")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    args = [str(ROOT / "Pre-Training" / "mocov2.py"), *command(
        "mocov2", store, run, tmp_path / "steps.jsonl", "--trainer.accelerator", "cpu",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "-1",
        "--trainer.max_steps", "12", "--checkpoint.every_n_steps", "2",
        "--checkpoint.signal_check_every", "3")]

    def launch():
        procs = []
        for rank in (0, 1):
            env = {**os.environ, **SLURM_ENV, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2",
                   "SLURM_NNODES": "1", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "PATH": f"{log.parent}{os.pathsep}{os.environ['PATH']}",
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
            procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        return procs

    procs = launch()
    deadline = time.monotonic() + 600
    while not run_checkpoints(run) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), procs[0].stderr.read()[-3000:]
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGUSR1)
    time.sleep(0.3)  # the other rank hears it a little later
    procs[1].send_signal(signal.SIGUSR1)
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    assert log.read_text().splitlines() == ["requeue 4242"]
    saved = run_checkpoints(run)[0]
    requeued_at = int(saved.stem.split("step=")[1])
    assert 0 < requeued_at < 12
    assert torch.load(saved, weights_only=True)["global_step"] == requeued_at
    assert not (run / "mocov2_backbone.pt").exists()

    procs = launch()  # the requeued job: the same command
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-3000:] + errors[1][-3000:]
    assert f"from {saved.name}" in errors[0]
    assert run_checkpoints(run)[0].name.endswith("step=12.ckpt")
    assert log.read_text().splitlines() == ["requeue 4242"]


def test_a_late_requeue_signal_does_not_kill_a_rank_that_already_stopped(tmp_path, monkeypatch):
    """The signal reaches DDP ranks at their own moments: one that already agreed on the requeue
    and left ``fit`` must ignore a late copy (the default action would kill it, rc -10)."""
    from types import SimpleNamespace

    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", f"{fake_scontrol(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    before = signal.getsignal(signal.SIGUSR1)
    try:
        callback = RunCheckpoints(requeue_signal="SIGUSR1")
        trainer = SimpleNamespace(is_global_zero=False, should_stop=False, global_step=3)
        callback.setup(trainer, None, "fit")
        assert signal.getsignal(signal.SIGUSR1) == callback._on_signal
        callback.teardown(trainer, None, "fit")  # a run that ends without a requeue
        assert signal.getsignal(signal.SIGUSR1) == before

        callback.setup(trainer, None, "fit")
        callback._requeue(trainer)
        assert trainer.should_stop
        callback.teardown(trainer, None, "fit")
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR1)  # would end the test process without the fix
    finally:
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.parametrize("method, every_n_steps", [("simclr", 0), ("byol", 4)])
@pytest.mark.slow
def test_a_run_resumed_from_an_end_of_epoch_checkpoint_takes_the_uninterrupted_steps(method, every_n_steps, store,
                                                                                      tmp_path):
    """The checkpoint of the step that ends epoch 0 (step 4 of 4 per epoch; written as the epoch
    ends, or as that step ends when it is a multiple of every_n_steps): the resumed run starts
    epoch 1 at its first batch, takes steps 5-12 as the uninterrupted run did, and no more."""
    reference = tmp_path / "reference.jsonl"
    pretrain_cli(method, args=command(method, store, tmp_path / "ref", reference, "--trainer.max_epochs", "3",
                                   "--checkpoint.every_n_steps", "0", "--checkpoint.every_n_epochs", "0"))
    expected = step_record.read(reference)
    assert sorted(expected) == list(range(1, 13))

    run, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = command(method, store, run, record, "--trainer.max_epochs", "3", "--checkpoint.every_n_steps",
                   str(every_n_steps), "--checkpoint.every_n_epochs", "1", "--checkpoint.keep", "5")
    kill_after_checkpoints([str(ROOT / "Pre-Training" / f"{method}.py"), *args], run, count=1)
    assert run_checkpoints(run)[0].name == "epoch=0-step=4.ckpt"
    lines_before = len(record.read_text().splitlines())
    resumed = pretrain_cli(method, args=args)
    assert resumed.trainer.global_step == 12
    after = [json.loads(line) for line in record.read_text().splitlines()[lines_before:]]
    assert [(r["step"], r["epoch"], r["batch"]) for r in after] == [
        (s, expected[s]["epoch"], expected[s]["batch"]) for s in range(5, 13)]
    for row in after:
        want = expected[row["step"]]
        assert row["views_sum"] == pytest.approx(want["views_sum"], rel=1e-9), (row, want)  # the same views
        assert row["lr"] == pytest.approx(want["lr"], rel=1e-12), (row, want)
        assert row["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6), (row, want)
    assert run_checkpoints(run)[0].name == "epoch=2-step=12.ckpt"


def test_the_same_command_after_the_run_finished_takes_no_step(store, tmp_path):
    """A finished run's newest checkpoint is the end of its last epoch: running the command again
    (a requeued job whose run had just finished) must not train one step more."""
    run, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = command("simclr", store, run, record, "--checkpoint.every_n_steps", "0", "--checkpoint.every_n_epochs", "1")
    assert pretrain_cli("simclr", args=args).trainer.global_step == STEPS
    finished = [p.name for p in run_checkpoints(run)]
    lines = len(record.read_text().splitlines())
    again = pretrain_cli("simclr", args=args)
    assert again.trainer.global_step == STEPS
    assert len(record.read_text().splitlines()) == lines  # no step recorded
    assert [p.name for p in run_checkpoints(run)] == finished


@pytest.mark.parametrize("stop, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.slow
def test_a_run_stopped_by_a_signal_exits_128_plus_it_and_says_how_to_resume(stop, status, store, tmp_path):
    """A scheduler's SIGTERM or a Ctrl-C is not a finished run (Lightning's own exits were 0 and 1)."""
    run, record = tmp_path / "run", tmp_path / "run.jsonl"
    args = command("simclr", store, run, record, "--trainer.max_epochs", "50")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    # a process started in the background inherits SIGINT ignored, and Python then leaves it so
    proc = subprocess.Popen([sys.executable, str(ROOT / "Pre-Training" / "simclr.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not run_checkpoints(run) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {stop.name} at step ")
    assert last.endswith("run the same command again to resume.")
    step = int(last.split(" at step ")[1].split(";")[0])
    newest = run_checkpoints(run)[0]
    assert newest.name in last
    if stop == signal.SIGTERM:  # saved at the step it stopped at
        assert int(newest.stem.split("step=")[1]) == step


def test_a_config_epoch_limit_that_ends_the_run_before_max_steps_says_so(store, tmp_path):
    args = command("simclr", store, tmp_path / "run", tmp_path / "r.jsonl", "--trainer.max_epochs", "1",
                   "--trainer.max_steps", "20")
    with pytest.warns(UserWarning, match="max_epochs 1 ends this run at step 4, before max_steps 20: give "
                                         "--trainer.max_epochs -1"):
        assert pretrain_cli("simclr", args=args).trainer.global_step == 4


@pytest.mark.slow
def test_a_short_run_says_how_to_see_its_loss(store, tmp_path):
    args = command("simclr", store, tmp_path / "run", tmp_path / "r.jsonl", "--trainer.log_every_n_steps", "50")
    with pytest.warns(UserWarning, match="this run has 8 steps and logs its loss every 50: 0 points in "
                                         "TensorBoard; give --trainer.log_every_n_steps 1"):
        pretrain_cli("simclr", args=args)
