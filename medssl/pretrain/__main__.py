"""``python -m medssl.pretrain`` is ``medssl pretrain``: any registered method, or the list of them.

    python -m medssl.pretrain METHOD fit --config Pre-Training/configs/METHOD_quick.yaml --data.store STORE
    python -m medssl.pretrain --list        # the registered methods, one a line
"""
import sys

from ..commands.pretrain import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m medssl.pretrain"))
