"""Download a public downstream dataset: ``medssl download dataset``.

    python Downstream/download.py covid --out data/COVID-CT
    python Downstream/download.py organsmnist --size 224 --out data/medmnist

The same options and exit status as ``medssl download dataset`` (medssl/commands/download_dataset.py).
"""
import sys

from medssl.commands.download_dataset import main

if __name__ == "__main__":
    sys.exit(main())
