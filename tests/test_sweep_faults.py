"""Faults around a sweep: torn results rows, empty files, full disks, scratch left by a kill,
and a folder that is not a slice store."""
import errno
import importlib.util
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from pytorch_lightning.callbacks import ModelCheckpoint

from medssl.data.store import SliceStore, StoreError
from medssl.downstream import sweep as sweep_module
from medssl.downstream.report import write_report
from medssl.downstream.scores import SEGMENTATION_SCORES
from medssl.downstream.sweep import SweepConfig, run_sweep

from conftest import task_counts

ROOT = Path(__file__).resolve().parents[1]
CONFIG = SweepConfig({"organ": ("medmnist", "unused.npz")}, ["random", "ckpt.pt"], fractions=(1.0, 0.5),
                     seeds=(0,))


def script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "Downstream" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_row(config, task, ckpt, fraction, seed, method, *rest):
    """A plausible finished run, its numbers derived from its key."""
    score = 0.5 + fraction / 4 + (ckpt == "random") * 0.1
    return {"task": task, "checkpoint": ckpt, "mode": config.mode, "fraction": fraction, "seed": seed,
            "method": method, "n_train": int(40 * fraction), "accuracy": score,
            "balanced_accuracy": score, "auc": score, "f1_macro": score, "precision": score,
            "recall": score, "epochs": 2, "wall_s": 1.5, "confusion": json.dumps([[3, 1], [1, 3]])}


@pytest.fixture
def fake_sweep(monkeypatch):
    """run_sweep without training: inputs are taken as valid, runs return fake rows."""
    calls = []

    def run_one(*args):
        calls.append(args[1:5])
        return fake_row(*args)

    monkeypatch.setattr(sweep_module, "check_inputs",
                        lambda config, out=None: {c: "random" if c == "random" else "byol" for c in config.checkpoints})
    monkeypatch.setattr(sweep_module, "run_one", run_one)
    return calls


def complete_sweep(path, fake_sweep):
    run_sweep(CONFIG, path, progress=False)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 5 and len(fake_sweep) == 4
    fake_sweep.clear()
    return lines


# --- torn rows ------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [3, 25, -12, -1], ids=["in-key", "in-metrics", "in-confusion",
                                                         "no-newline"])
def test_torn_last_row_is_named_and_run_again(tmp_path, fake_sweep, keep):
    out = tmp_path / "results.csv"
    lines = complete_sweep(out, fake_sweep)
    last_key = tuple(pd.read_csv(out).iloc[3][["task", "checkpoint"]])
    torn = lines[-1][:keep]
    out.write_bytes(b"".join(lines[:-1]) + torn)

    with pytest.warns(UserWarning, match=r"results\.csv.*row 5"):
        table = run_sweep(CONFIG, out, progress=False)
    assert [c[:2] for c in fake_sweep] == [last_key]  # only the torn run again
    assert len(table) == 4 and not table[["task", "checkpoint", "fraction", "seed"]].duplicated().any()
    assert out.read_bytes().splitlines(keepends=True)[:4] == lines[:4]
    assert out.read_bytes().endswith(b"\n")
    assert table.drop(columns=[*SEGMENTATION_SCORES, "n_test"]).notna().all().all()  # a classification row
    assert (tmp_path / "results.csv.torn").read_bytes().startswith(torn)  # kept aside, not lost


def test_torn_row_followed_by_later_rows_is_repaired(tmp_path, fake_sweep):
    """An earlier sweep appended after a torn tail: the merged line is set aside and both of its
    runs are done again; complete rows before and after it stay."""
    out = tmp_path / "results.csv"
    lines = complete_sweep(out, fake_sweep)
    merged = lines[2][:30] + lines[3]
    out.write_bytes(lines[0] + lines[1] + merged + lines[4])
    with pytest.warns(UserWarning, match=r"results\.csv.*row 3"):
        table = run_sweep(CONFIG, out, progress=False)
    assert len(fake_sweep) == 2 and len(table) == 4
    assert not table[["checkpoint", "fraction"]].duplicated().any()
    assert lines[4] in out.read_bytes().splitlines(keepends=True)[:3]


def test_append_cuts_a_torn_tail_and_keeps_whole_rows(tmp_path, fake_sweep):
    from medssl.downstream.results import append_row

    out = tmp_path / "results.csv"
    lines = complete_sweep(out, fake_sweep)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    append_row(out, dict(pd.read_csv(io.BytesIO(lines[0] + lines[-1])).iloc[0]))
    assert out.read_bytes() == b"".join(lines)


def test_a_sweep_killed_while_writing_the_header_starts_afresh(tmp_path, fake_sweep):
    out = tmp_path / "results.csv"
    out.write_bytes(b"task,checkpoint,mo")
    with pytest.warns(UserWarning, match=r"results\.csv.*row 1"):
        table = run_sweep(CONFIG, out, progress=False)
    assert len(table) == 4 and len(fake_sweep) == 4


def test_report_skips_a_torn_row(tmp_path, fake_sweep):
    out = tmp_path / "results.csv"
    lines = complete_sweep(out, fake_sweep)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:-12])
    with pytest.warns(UserWarning, match=r"results\.csv.*row 5.*skipped"):
        paths = write_report(out, tmp_path / "report")
    summary = pd.read_csv(paths["summary"])
    assert summary.runs.sum() == 3


def test_results_without_the_key_columns_are_refused(tmp_path, fake_sweep):
    out = tmp_path / "results.csv"
    out.write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match=r"results\.csv.*lacks columns.*checkpoint"):
        run_sweep(CONFIG, out, progress=False)
    assert out.read_text() == "name,score\nx,1\n" and not fake_sweep


# --- empty files, full disks, a folder that is not a store --------------------------------------
def test_report_command_on_an_empty_file_names_it(tmp_path, capsys):
    empty = tmp_path / "results.csv"
    empty.write_text("")
    assert script("report").main([str(empty)]) == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "empty" in err


def test_disk_full_during_append_names_the_results_file(tmp_path, fake_sweep, monkeypatch):
    out = tmp_path / "results.csv"
    lines = complete_sweep(out, fake_sweep)
    out.write_bytes(b"".join(lines[:-1]))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left.*results\.csv") as err:
        run_sweep(CONFIG, out, progress=False)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(out)
    assert out.read_bytes() == b"".join(lines[:-1])  # the failed append is undone


def test_sweep_command_reports_a_full_disk(tmp_path, fake_sweep, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "results.csv"
    assert script("sweep").main(["--task", "organ=medmnist:unused.npz", "--fractions", "1.0",
                                 "--seeds", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and str(out) in err


def test_disk_full_during_report_names_the_file(tmp_path, fake_sweep, monkeypatch, capsys):
    out = tmp_path / "results.csv"
    complete_sweep(out, fake_sweep)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError, match=r"No space left.*summary\.csv"):
        write_report(out, tmp_path / "report")
    assert script("report").main([str(out)]) == 1
    assert "summary.csv" in capsys.readouterr().err


def test_scratch_lives_beside_the_results_and_a_rerun_clears_it(tmp_path, monkeypatch):
    """A killed sweep leaves its checkpoints in the output folder (never in /tmp); the next
    run removes them."""
    from medssl.downstream.phantom_tasks import write_phantom_tasks

    tasks = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(3, 1, 1), progress=False)
    config = SweepConfig({"organ": ("medmnist", str(tasks["organ"]))}, ("random",), fractions=(1.0,),
                         seeds=(0,), finetune=("--model.arch", "resnet18", "--data.image_size", "32",
                                               "--data.num_workers", "0", "--trainer.accelerator", "cpu"))
    places = []

    class Killed(Exception):
        pass

    def record_then_die(checkpoint, trainer, module):
        places.append(Path(checkpoint.dirpath))
        raise Killed

    monkeypatch.setattr(ModelCheckpoint, "on_train_start", record_then_die)
    out = tmp_path / "out" / "results.csv"
    with pytest.raises(Killed):
        run_sweep(config, out, progress=False)
    assert places and out.parent in places[0].parents
    places[0].mkdir(parents=True, exist_ok=True)  # what a kill during training leaves
    (places[0] / "epoch=0.ckpt").write_bytes(b"weights")
    monkeypatch.undo()
    monkeypatch.setattr(sweep_module, "run_one", lambda *args: fake_row(*args[:6]))
    run_sweep(config, out, progress=False)
    assert not places[0].exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.csv"]


def test_a_folder_that_is_not_a_store_says_how_to_make_one(tmp_path):
    dicom = tmp_path / "LIDC-IDRI-0001"
    dicom.mkdir()
    (dicom / "1-001.dcm").write_bytes(b"\0" * 132 + b"DICM")
    with pytest.raises(StoreError) as err:
        SliceStore(dicom)
    message = str(err.value)
    assert str(dicom) in message and "not a slice store" in message
    assert "preprocess.py" in message and "interrupted" not in message


def test_an_unfinished_store_is_still_called_interrupted(tmp_path):
    import numpy as np

    from medssl.data.store import SliceStoreWriter

    writer = SliceStoreWriter(tmp_path / "store", 8, shard_slices=2)
    rows = [{"source": "a", "patient_id": "p", "series_uid": "s", "modality": "CT", "slice_index": i,
             "position_mm": float(i), "spacing_row_mm": 1.0, "spacing_col_mm": 1.0} for i in range(2)]
    writer.add(np.zeros((2, 8, 8), np.int16), rows)  # never closed
    with pytest.raises(StoreError, match="interrupted"):
        SliceStore(tmp_path / "store")


def test_finetune_trainer_names_its_folder_on_a_full_disk(tmp_path, monkeypatch):
    import pytorch_lightning as pl

    from medssl.downstream.cli import FineTuneTrainer

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pl.Trainer, "fit", full)
    trainer = FineTuneTrainer(default_root_dir=tmp_path, logger=False, accelerator="cpu",
                              enable_progress_bar=False)
    with pytest.raises(OSError, match="No space left") as err:
        trainer.fit(None)
    assert err.value.filename == str(tmp_path)
