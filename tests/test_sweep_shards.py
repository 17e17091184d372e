"""A sweep spread over workers (``--shard I/N``, or a SLURM job array's task): concurrent
worker processes, one of them killed and run again, give the rows one worker gives, each once."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medssl.downstream import sweep as sweep_module
from medssl.downstream.results import KEY, read_results, read_sweep
from medssl.downstream.sweep import Shard, SweepConfig, run_sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(tasks={"organ": ["medmnist", "unused.npz"], "covid": ["covid", "unused"]},
              checkpoints=["random", "a.pt", "b.pt"], fractions=[1.0, 0.5, 0.25], seeds=[0, 1])
# A worker: the sweep with its inputs taken as valid and each run a fake row derived from its key
WORKER = '''
import json, sys, time
from pathlib import Path
from medssl.downstream import sweep
from medssl.downstream.sweep import Shard, SweepConfig, run_sweep

def fake_run(config, task, ckpt, fraction, seed, method, *rest):
    time.sleep(float(sys.argv[3]))
    score = 0.5 + fraction / 4 + (ckpt == "random") * 0.1 + seed / 100
    return {"task": task, "checkpoint": ckpt, "mode": config.mode, "fraction": fraction, "seed": seed,
            "method": method, "n_train": int(40 * fraction), "accuracy": score, "balanced_accuracy": score,
            "auc": score, "f1_macro": score, "precision": score, "recall": score, "epochs": 2, "wall_s": 1.5,
            "confusion": json.dumps([[3, 1], [1, 3]]), "classes": json.dumps(["a", "b"])}

sweep.check_inputs = lambda config, out=None: {c: c.split(".")[0] for c in config.checkpoints}
sweep.run_one = fake_run
settings = json.loads(Path(sys.argv[1]).read_text())
settings["tasks"] = {k: tuple(v) for k, v in settings["tasks"].items()}
shard = Shard.parse(sys.argv[4]) if len(sys.argv) > 4 else None
run_sweep(SweepConfig(**settings), sys.argv[2], progress=False, shard=shard)
'''


def worker(tmp_path: Path, out: Path, shard: str | None, pause: float) -> subprocess.Popen:
    script, settings = tmp_path / "worker.py", tmp_path / "sweep.json"
    script.write_text(WORKER)
    settings.write_text(json.dumps(CONFIG))
    return subprocess.Popen([sys.executable, str(script), str(settings), str(out), str(pause),
                             *([shard] if shard else [])], cwd=ROOT, stderr=subprocess.PIPE, text=True)


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(KEY).reset_index(drop=True)


@pytest.mark.slow
def test_three_workers_one_killed_and_rerun_give_one_workers_rows(tmp_path):
    alone = tmp_path / "alone" / "results.csv"
    assert worker(tmp_path, alone, None, 0.0).wait(timeout=300) == 0
    expected = ordered(read_results(alone))
    assert len(expected) == 2 * 3 * 3 * 2

    out = tmp_path / "spread" / "results.csv"
    procs = {i: worker(tmp_path, out, f"{i}/3", 0.3) for i in range(3)}
    victim = Shard(1, 3).path(out)
    deadline = time.monotonic() + 300
    while (not victim.exists() or len(victim.read_bytes().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)  # two runs written, the third under way
    for i, proc in procs.items():
        proc.wait(timeout=300)
        assert proc.returncode == (-signal.SIGKILL if i == 1 else 0), proc.stderr.read()[-2000:]
    assert len(read_sweep(out)) < len(expected)
    again = worker(tmp_path, out, "1/3", 0.0)  # the same command again
    assert again.wait(timeout=300) == 0, again.stderr.read()[-3000:]

    merged = ordered(read_sweep(out))
    pd.testing.assert_frame_equal(merged, expected)
    parts = [read_results(Shard(i, 3).path(out)) for i in range(3)]
    assert [len(p) for p in parts] == [12, 12, 12]  # every third run of the fixed order each
    assert sum(len(p) for p in parts) == len(expected)  # nothing twice
    assert not out.exists()  # only the shards' files


def test_a_shard_skips_runs_any_file_of_the_sweep_holds(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep_module, "check_inputs", lambda config, out=None: {c: c for c in config.checkpoints})

    def fake(config, task, ckpt, fraction, seed, method, *rest):
        calls.append((task, ckpt, fraction, seed))
        return {"task": task, "checkpoint": ckpt, "mode": config.mode, "fraction": fraction, "seed": seed,
                "method": method, "n_train": 4, "accuracy": 0.5, "balanced_accuracy": 0.5, "auc": 0.5,
                "f1_macro": 0.5, "precision": 0.5, "recall": 0.5, "epochs": 1, "wall_s": 0.1,
                "confusion": "[[1]]"}
    monkeypatch.setattr(sweep_module, "run_one", fake)
    config = SweepConfig({"organ": ("medmnist", "x.npz")}, ("random", "a.pt"), (1.0, 0.5), (0,))
    out = tmp_path / "results.csv"
    run_sweep(config, out, progress=False, shard=Shard(0, 2))
    assert len(calls) == 2
    table = run_sweep(config, out, progress=False)  # unsharded afterwards: only the other half
    assert len(calls) == 4 and len(table) == 4 and not table[KEY].duplicated().any()


def test_the_shard_comes_from_the_slurm_array(monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert Shard.from_slurm_array() is None
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-10
    assert Shard.from_slurm_array() == Shard(6, 10)
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "2")  # --array=1-19:2
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "19")
    assert Shard.from_slurm_array() == Shard(9, 10)
    for bad in ("3/3", "x/2", "2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
