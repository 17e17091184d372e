"""Export the backbone of a pre-training checkpoint: ``medssl export``.

    python Pre-Training/export.py runs/swav/checkpoints/last.ckpt [--out swav_backbone.pt]

The same options and exit status as ``medssl export`` (medssl/commands/export.py).
"""
import sys

from medssl.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
