"""``python -m medssl`` is the ``medssl`` command (e.g. under ``torchrun -m medssl``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
