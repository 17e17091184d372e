"""The ``medssl`` command: ``medssl COMMAND [options]``, one door to the project's tools.

Each command is the same function as a script in Pre-Training/, Downstream/ or checkpoints/
(medssl/commands/): the same options, configs and exit status. Only the chosen command's module
is imported, so ``medssl --help`` starts without torch or Lightning.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

# name -> (module in medssl.commands, one line of help)
COMMANDS = {
    "ingest": ("ingest", "DICOM, NIfTI and image folders into a slice store"),
    "pretrain": ("pretrain", "pre-train a backbone on a slice store: METHOD fit ..."),
    "export": ("export", "a pre-training checkpoint's backbone, for fine-tuning"),
    "finetune": ("finetune", "fine-tune or probe a backbone on a labelled task"),
    "sweep": ("sweep", "fine-tune checkpoints x tasks x fractions x seeds"),
    "report": ("report", "does pre-training help? verdicts, tables, plots"),
    "download": ("download", "a public dataset or the study's released checkpoints"),
    "inspect": ("inspect", "describe and check a slice store or a checkpoint"),
    "phantom": ("phantom", "write the built-in phantom CT store and tasks"),
    "doctor": ("doctor", "check that every method trains right here, and how fast"),
}

EPILOG = """examples:
  medssl ingest LIDC-IDRI/ --out data/lidc_store
  medssl pretrain swav fit --config Pre-Training/configs/swav.yaml --data.store data/lidc_store
  medssl finetune fit --config Downstream/configs/covid.yaml --data.path data/COVID-CT --model.checkpoint spark

medssl COMMAND --help shows a command's options. The scripts in Pre-Training/, Downstream/ and
checkpoints/ are the same commands (e.g. python Pre-Training/preprocess.py = medssl ingest)."""


def package_version() -> str:
    try:
        return version("medssl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="medssl", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Self-supervised pre-training on medical scans, and how much it helps on small labelled datasets.")
    ap.add_argument("--version", action="version", version=f"medssl {package_version()}")
    commands = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return ap


def exit_status(stop: SystemExit) -> int:
    """The status ``sys.exit`` would give (argparse's --help and errors, LightningCLI's)."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run ``medssl ARGV``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        name = parser().parse_args(argv[:1]).command  # the rest is the command's own command line
        module = importlib.import_module(f"medssl.commands.{COMMANDS[name][0]}")
        return module.main(argv[1:], prog=f"medssl {name}")
    except SystemExit as stop:
        return exit_status(stop)
