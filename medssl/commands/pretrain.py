"""Pre-train a backbone on a slice store with a registered method: one LightningCLI for all of
them, whose options and YAML configs are those of python Pre-Training/<method>.py.

    medssl pretrain swav fit --config Pre-Training/configs/swav.yaml --data.store data/lidc_store
    medssl pretrain spark fit --config Pre-Training/configs/spark_quick.yaml --data.store STORE
    medssl pretrain swav fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes
    medssl pretrain swav fit --help        # every option of a method (--print_config: every setting)
    medssl pretrain --list                 # the registered methods, one a line
"""
from __future__ import annotations

import argparse
import sys


def parser(methods: list[str], prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("method", choices=methods, metavar="METHOD",
                    help=f"a registered method: {', '.join(methods)}; the LightningCLI's arguments follow")
    ap.add_argument("--list", action="store_true", help="print the registered methods and stop")
    return ap


def main(argv=None, prog: str | None = None) -> int:
    from ..pretrain.methods import method_names

    argv = list(sys.argv[1:] if argv is None else argv)
    names = method_names()
    if argv[:1] == ["--list"]:
        print("\n".join(names))
        return 0
    # the method is this parser's; the rest (fit, --config, ...) is the LightningCLI's
    ap = parser(names, prog)
    if argv[:1] and not argv[0].startswith("-") and argv[0] not in names:
        import difflib

        close = difflib.get_close_matches(argv[0].lower(), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        ap.error(f"unknown method {argv[0]!r}{hint} (registered: {', '.join(names)})")
    method = ap.parse_args(argv[:1]).method
    from ..pretrain.cli import pretrain_cli

    pretrain_cli(method, args=argv[1:], prog=f"{prog or 'python -m medssl.pretrain'} {method}")
    return 0
