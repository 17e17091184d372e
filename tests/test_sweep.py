import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from medssl.checkpoints import CheckpointError
from medssl.checkpoints.export import export_backbone
from medssl.downstream import sweep as sweep_module
from medssl.downstream.cli import finetune_settings
from medssl.downstream.phantom_tasks import ORGAN_CLASSES, write_phantom_tasks
from medssl.downstream.report import write_report
from medssl.downstream.scores import METRICS
from medssl.downstream.sweep import SweepConfig, run_sweep
from medssl.downstream.tasks import TaskError
from medssl.models import build_backbone

from conftest import task_counts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    tasks = write_phantom_tasks(root / "tasks", size=32, counts=task_counts(5, 1, 1), progress=False)
    torch.manual_seed(0)
    ckpt = export_backbone(build_backbone("resnet18"), root / "byol_backbone.pt", method="byol",
                           arch="resnet18")
    config = SweepConfig({"organ": ("medmnist", str(tasks["organ"]))}, (str(ckpt), "random"),
                         fractions=(1.0, 0.5), seeds=(0, 1),
                         finetune=("--model.arch", "resnet18", "--data.image_size", "32",
                                   "--data.batch_size", "16", "--trainer.max_epochs", "2",
                                   "--model.freeze_epochs", "1", "--data.num_workers", "0",
                                   "--trainer.accelerator", "cpu"))
    return root, config


@pytest.mark.slow
def test_sweep_runs_resumes_without_duplicates_and_reports(setup, tmp_path, monkeypatch):
    _, config = setup
    out = tmp_path / "results.csv"
    real, calls = sweep_module.run_one, []

    def killed_after_three(*args):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the sweep dies during its 4th run
        return real(*args)

    monkeypatch.setattr(sweep_module, "run_one", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, out, progress=False)
    assert len(pd.read_csv(out)) == 3
    monkeypatch.setattr(sweep_module, "run_one", real)
    table = run_sweep(config, out, progress=False)
    assert len(table) == 8  # 2 checkpoints x 2 fractions x 2 seeds, each once
    assert not table.duplicated(["task", "checkpoint", "fraction", "seed"]).any()
    assert set(table.method) == {"byol", "random"}
    assert (table[table.fraction == 0.5].n_train < table[table.fraction == 1.0].n_train.max()).all()
    assert table[["accuracy", "auc"]].apply(lambda c: c.between(0, 1)).all().all()

    assert all(json.loads(names) == list(ORGAN_CLASSES) for names in table.classes)  # the task's class names

    save, drawn = Figure.savefig, {}  # figure file name: its confusion-matrix axes

    def record(fig, path, *args, **kwargs):
        drawn[Path(path).name] = [ax for ax in fig.axes if ax.images]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    paths = write_report(out, tmp_path / "report")
    assert len(drawn["organ_confusion.png"]) == 2  # random init and byol
    for ax in drawn["organ_confusion.png"]:  # the confusion matrices name the organs, not 0..6
        assert [t.get_text() for t in ax.get_xticklabels()] == list(ORGAN_CLASSES)
    for key in ("table", "plot_organ", "confusion_organ"):
        assert paths[key].exists()
    assert paths["plot_organ"].read_bytes()[:4] == b"\x89PNG"
    summary = pd.read_csv(paths["summary"])
    text = paths["table"].read_text()
    for (method, fraction), rows in table.groupby(["method", "fraction"]):
        row = summary[(summary.method == method) & (summary.fraction == fraction)].iloc[0]
        for metric in METRICS:
            assert row[f"{metric}_mean"] == pytest.approx(rows[metric].mean())
            assert row[f"{metric}_std"] == pytest.approx(rows[metric].std())
        assert f"{rows['accuracy'].mean():.3f} +- {rows['accuracy'].std():.3f}" in text


def test_bad_inputs_fail_before_any_run(setup, tmp_path):
    root, config = setup
    bad_task = SweepConfig({"x": ("covid", str(tmp_path / "nowhere"))}, ["random"])
    with pytest.raises(TaskError, match="split list missing"):
        run_sweep(bad_task, tmp_path / "r.csv", progress=False)
    wrong_arch = SweepConfig(config.tasks, (str(root / "byol_backbone.pt"),), finetune=("--model.arch", "resnet50"))
    with pytest.raises(CheckpointError, match="holds a resnet18"):
        run_sweep(wrong_arch, tmp_path / "r.csv", progress=False)
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.slow
def test_sweep_and_report_commands(setup, tmp_path):
    root, config = setup
    organ = config.tasks["organ"][1]
    cmd = [sys.executable, str(ROOT / "Downstream" / "sweep.py"), "--task", f"organ=medmnist:{organ}",
           "--checkpoints", "random", "--fractions", "1.0", "--seeds", "0", "1", "--model.arch", "resnet18",
           "--data.image_size", "32", "--data.batch_size", "16", "--trainer.max_epochs", "1",
           "--model.freeze_epochs", "0", "--data.num_workers", "0", "--out", str(tmp_path / "results.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = proc.stdout + proc.stderr
    assert said.count("GPU available") == 1 and "2 runs in" in said  # once per sweep, not per run
    report = subprocess.run([sys.executable, str(ROOT / "Downstream" / "report.py"),
                             str(tmp_path / "results.csv")], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "results.md").exists()


def test_a_sweep_run_is_the_fine_tune_command_at_its_fraction_seed_and_checkpoint():
    protocol = ("--config", str(ROOT / "Downstream" / "configs" / "own_data.yaml"), "--model.lr", "0.001",
                "--data.test_fraction", "0.3")
    config = SweepConfig({"mine": ("folder", "data")}, finetune=protocol)
    run = vars(finetune_settings(config.run_args("mine", "ckpt.pt", 0.25, 2)).as_flat())
    single = vars(finetune_settings([*protocol, "--data.path", "data"]).as_flat())
    differ = {key for key in single if run[key] != single[key]}
    assert differ == {"data.fraction", "data.seed", "seed_everything", "model.checkpoint",
                      "data.backbone", "trainer.enable_progress_bar", "trainer.enable_model_summary"}
    assert run["data.backbone"] == run["model.checkpoint"] == "ckpt.pt"  # the data side learns it
    assert (run["data.fraction"], run["data.seed"], run["seed_everything"]) == (0.25, 2, 2)
    assert run["data.test_fraction"] == 0.3 and config.settings().model.lr == 0.001


def test_the_sweep_command_s_help_loads_no_torch_and_its_defaults_are_the_sweep_s():
    from medssl.commands import sweep as command

    assert command.CHECKPOINTS == list(SweepConfig.checkpoints) and command.SEEDS == list(SweepConfig.seeds)
    probe = ("import contextlib, io, sys\nfrom medssl.commands.sweep import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n    try:\n        main(['--help'])\n"
             "    except SystemExit:\n        pass\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
