"""Say what a checkpoint holds and whether it will load: ``medssl inspect CHECKPOINT``.

    python checkpoints/describe.py PATH|NAME [--arch resnet50] [--trust-pickle] [--dir DIR]

The same options and exit status (1: it will not load) as ``medssl inspect``
(medssl/commands/inspect_checkpoint.py).
"""
import sys

from medssl.commands.inspect_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
