"""Ingest DICOM series, NIfTI volumes and image folders into a slice store: ``medssl ingest``.

    python Pre-Training/preprocess.py LIDC-IDRI/ --out data/lidc_store
    python Pre-Training/preprocess.py scans/ --dry-run

The same options and exit status (0, 2 some inputs skipped, 1, 130) as ``medssl ingest``
(medssl/commands/ingest.py, which --help describes).
"""
import sys

from medssl.commands.ingest import main

if __name__ == "__main__":
    sys.exit(main())
