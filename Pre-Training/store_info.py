"""Describe a slice store, check it, and save a picture of it: ``medssl inspect STORE``.

    python Pre-Training/store_info.py STORE [--verify] [--preview store.png]

The same options and exit status (1: damaged or not a store) as ``medssl inspect STORE``
(medssl/commands/inspect_store.py).
"""
import sys

from medssl.commands.inspect_store import main

if __name__ == "__main__":
    sys.exit(main())
