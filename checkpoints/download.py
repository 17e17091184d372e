"""Download the study's released checkpoints: ``medssl download checkpoint``.

    python checkpoints/download.py all
    python checkpoints/download.py spark [--dir DIR]

The same options and exit status as ``medssl download checkpoint``
(medssl/commands/download_checkpoint.py).
"""
import sys

from medssl.commands.download_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
