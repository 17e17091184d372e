"""Any registered method through the shared command line, or the list of them.

    python -m medssl.pretrain METHOD fit --config Pre-Training/configs/METHOD_quick.yaml --data.store STORE
    python -m medssl.pretrain --list        # the registered methods, one a line
"""
import sys

from .cli import pretrain_cli
from .methods import method_names


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    if argv[0] == "--list":
        print("\n".join(method_names()))
        return
    sys.argv = [f"{sys.argv[0]} {argv[0]}", *argv[1:]]  # LightningCLI reads the rest
    pretrain_cli(argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
