"""The medssl command: the installed entry point, its help, the scripts as a second door to the
same functions, and a round trip through it (ingest DICOM -> inspect the store -> pre-train one
step -> export the checkpoint -> inspect the backbone) with the documented exit statuses."""
import importlib.util
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points, version
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medssl.cli import COMMANDS, main
from medssl.data.phantom import phantom_volume
from medssl.data.synthetic_dicom import write_series

from conftest import task_counts

ROOT = Path(__file__).resolve().parents[1]

# each script and the command module whose main it runs
SCRIPTS = {"Pre-Training/preprocess.py": "ingest", "Pre-Training/export.py": "export",
           "Pre-Training/make_phantom.py": "phantom", "Pre-Training/store_info.py": "inspect_store",
           "Downstream/finetune.py": "finetune", "Downstream/sweep.py": "sweep",
           "Downstream/report.py": "report", "Downstream/download.py": "download_dataset",
           "checkpoints/download.py": "download_checkpoint", "checkpoints/describe.py": "inspect_checkpoint"}


def test_installed_console_script_runs_and_help_imports_no_torch():
    assert [ep.value for ep in entry_points(group="console_scripts", name="medssl")] == ["medssl.cli:main"]
    script = Path(sys.executable).parent / "medssl"
    assert script.is_file(), f"{script} missing: pip install -e . installs it"
    shown = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.strip() == f"medssl {version('medssl')}"
    probe = ("import sys; from medssl.cli import main; code = main(['--help']); "
             "print(code, sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))")
    fast = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert fast.stdout.splitlines()[-1] == "0 []", fast.stderr


def test_help_lists_every_command_on_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert re.search(rf"^ +{name} +{re.escape(summary)}$", out, re.M), f"{name}: no one-line summary in\n{out}"
    assert main([]) == 2 and main(["train"]) == 2  # no command, an unknown one
    assert "invalid choice: 'train'" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["ingest"], ["pretrain"], ["pretrain", "swav"], ["export"], ["finetune"],
                                  ["sweep"], ["report"], ["download"], ["download", "dataset"],
                                  ["download", "checkpoint"], ["inspect"], ["phantom"], ["doctor"]], ids=" ".join)
def test_every_command_has_help(args, capsys):
    assert main([*args, "--help"]) == 0
    assert f"usage: medssl {' '.join(args)}" in capsys.readouterr().out


def test_pretrain_lists_the_registered_methods(capsys):
    from medssl.pretrain.methods import method_names

    assert main(["pretrain", "--list"]) == 0
    assert capsys.readouterr().out.split() == method_names()
    assert main(["pretrain", "no-such-method", "fit"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in method_names()), err


@pytest.mark.parametrize("args", [["pretrain", "--list"], ["pretrain", "--help"], ["pretrain", "simclr-x"]],
                         ids=" ".join)
def test_listing_and_naming_methods_imports_no_torch(args):
    probe = (f"import contextlib, io, sys; from medssl.cli import main\n"
             f"with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
             f"    code = main({args!r})\n"
             "print(code, sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-1] in ("0 []", "2 []"), out.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_runs_its_commands_function(script):
    spec = importlib.util.spec_from_file_location(f"door_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main is importlib.import_module(f"medssl.commands.{SCRIPTS[script]}").main


@pytest.mark.slow
def test_round_trip_through_the_command(tmp_path, capsys):
    scans, store, run = tmp_path / "scans", tmp_path / "store", tmp_path / "run"
    for k in range(2):
        write_series(scans / f"patient{k}", phantom_volume(0, k, 4, 32)[0], series_uid=f"7.{k}",
                     patient_id=f"P{k}")
    ingest = ["ingest", str(scans), "--out", str(store), "--size", "32", "--workers", "1"]
    assert main(ingest) == 0
    assert f"store      {store}: 8 slices" in capsys.readouterr().out
    (scans / "broken.dcm").write_bytes(b"\x01" * 300)
    assert main(ingest) == 2  # finished, with a skipped input
    assert "skipped    1 inputs" in capsys.readouterr().out

    assert main(["inspect", str(store), "--verify", "--preview", str(tmp_path / "store.png")]) == 0
    out = capsys.readouterr().out
    assert "slices     8 of 32x32" in out and "all shard checksums match" in out
    assert (tmp_path / "store.png").stat().st_size > 0
    assert main(["inspect", str(scans)]) == 1  # a folder that is not a store
    assert "not a slice store" in capsys.readouterr().err

    assert main(["pretrain", "mocov2", "fit", "--config", str(ROOT / "Pre-Training/configs/mocov2_quick.yaml"),
                 "--data.store", str(store), "--data.batch_size", "4", "--data.num_workers", "0",
                 "--model.queue_length", "8", "--trainer.max_steps", "1", "--trainer.default_root_dir", str(run),
                 "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]) == 0
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "b.pt")]) == 0
    exported = torch.load(tmp_path / "b.pt", weights_only=True)
    at_end = torch.load(run / "mocov2_backbone.pt", weights_only=True)
    assert exported["method"] == "mocov2" and exported["steps"] == at_end["steps"] == 1
    assert exported["state_dict"].keys() == at_end["state_dict"].keys()
    assert all(torch.equal(v, at_end["state_dict"][k]) for k, v in exported["state_dict"].items())
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "b.pt")]) == 0
    assert "will it load? YES" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "b.pt")]) == 1  # an export is not a training checkpoint
    assert "not a medssl pre-training checkpoint" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "store.png")]) == 1
    assert "will it load? NO" in capsys.readouterr().out


def test_download_asks_what_a_bare_name_is(capsys):
    assert main(["download", "spark"]) == 2
    assert "medssl download checkpoint spark" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["pretrain", "simclr", "fit"], ["finetune", "fit"]])
@pytest.mark.slow
def test_the_trainer_level_optimiser_options_are_gone(command, tmp_path):
    """LightningCLI's ``--optimizer`` / ``--lr_scheduler`` would replace the method's optimiser
    and schedule with a constant rate: one way to set it, ``--model.optimizer.*`` (pretrain)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "medssl", *command, "--optimizer", "SGD", "--print_config"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--optimizer" in proc.stderr


@pytest.mark.slow
def test_a_mistyped_input_path_is_an_error_and_writes_nothing(tmp_path):
    real = tmp_path / "archive"
    real.mkdir()
    proc = subprocess.run([sys.executable, "-m", "medssl", "ingest", str(real), str(tmp_path / "archiv"),
                           "--out", str(tmp_path / "store")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no such file or folder: {tmp_path / 'archiv'} (nothing written)"]
    assert not (tmp_path / "store").exists()


def test_inspecting_a_store_without_slices_is_not_a_success(tmp_path):
    from medssl.data.store import SliceStoreWriter

    with SliceStoreWriter(tmp_path / "empty", 16):  # every input skipped: a complete store of 0 slices
        pass
    proc = subprocess.run([sys.executable, "-m", "medssl", "inspect", str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "holds no slices" in proc.stderr


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_ordinary_mistakes_get_one_line_naming_the_file(tmp_path):
    """A wrong store, a store smaller than a batch, a folder given as a checkpoint: one line, exit 1."""
    quick = str(ROOT / "Pre-Training" / "configs" / "simclr_quick.yaml")
    run = ["medssl", "pretrain", "simclr", "fit", "--config", quick, "--trainer.default_root_dir", str(tmp_path / "r")]
    proc = subprocess.run([sys.executable, "-m", *run, "--data.store", str(tmp_path / "stor")],
                          capture_output=True, text=True, timeout=300)
    assert str(tmp_path / "stor") in one_line_error(proc)
    store = phantom_store_path(tmp_path)
    proc = subprocess.run([sys.executable, "-m", *run, "--data.store", str(store), "--data.batch_size", "64"],
                          capture_output=True, text=True, timeout=300)
    assert "lower --data.batch_size (at most 16)" in one_line_error(proc)
    from medssl.downstream.phantom_tasks import write_phantom_tasks

    tasks = write_phantom_tasks(tmp_path / "tasks", size=32, counts=task_counts(4, 1, 1), progress=False)
    finetune = [sys.executable, "-m", "medssl", "finetune", "fit", "--data.kind", "medmnist"]
    proc = subprocess.run([*finetune, "--data.path", str(tasks["organ"]), "--model.checkpoint", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert f"error: {tmp_path}: not a readable PyTorch checkpoint" in one_line_error(proc)
    proc = subprocess.run([*finetune, "--data.path", str(tmp_path / "organ.npz")],  # a task file that is not there
                          capture_output=True, text=True, timeout=300)
    assert str(tmp_path / "organ.npz") in one_line_error(proc)
    only = tmp_path / "only" / "normal"  # a labelled folder with one class
    only.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(only / f"{i}.png")
    proc = subprocess.run([sys.executable, "-m", "medssl", "finetune", "fit", "--data.kind", "folder",
                           "--data.path", str(only.parent)], capture_output=True, text=True, timeout=300)
    assert "at least two classes" in one_line_error(proc) and str(only.parent) in one_line_error(proc)


def phantom_store_path(tmp_path):
    from medssl.data.phantom import write_phantom_store

    return write_phantom_store(tmp_path / "store", patients=2, slices_per_patient=8, size=32, seed=0, workers=1,
                               progress=False).path


def test_a_misspelled_method_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as stop:
        from medssl.commands.pretrain import main as pretrain_main

        pretrain_main(["simcrl", "fit"])
    assert stop.value.code == 2
    assert "unknown method 'simcrl'; did you mean 'simclr'?" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ingest", "export", "sweep", "report", "download_dataset", "download_checkpoint",
                                  "inspect_store", "inspect_checkpoint", "phantom", "doctor"])
def test_every_option_a_user_sets_has_a_line_of_help(name):
    import argparse
    import importlib

    ap = importlib.import_module(f"medssl.commands.{name}").parser()
    bare = [a.option_strings or [a.dest] for a in ap._actions
            if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not bare, f"medssl {name}: options without help: {bare}"


@pytest.mark.slow
def test_the_fine_tune_command_s_help_explains_every_model_and_data_option():
    proc = subprocess.run([sys.executable, "-m", "medssl", "finetune", "fit", "--help"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0
    options = re.findall(r"^  (--(?:model|data)\.\w+)(?: \S+)?\s{2,}(.*)$", proc.stdout, re.M)
    assert len(options) > 20
    bare = [name for name, text in options if text.startswith("(type")]
    assert not bare, f"options without a line of help: {bare}"
    assert "--model.mode {finetune,linear,knn}" in proc.stdout and "lacks type and help" not in proc.stdout
    about = subprocess.run([sys.executable, "-m", "medssl", "finetune", "--help"], capture_output=True, text=True,
                           timeout=300)
    assert "Fine-tune, or probe" in about.stdout and "Lightning Trainer command line tool" not in about.stdout
