"""Fine-tune checkpoints x tasks x training fractions x seeds: ``medssl sweep``.

    python Downstream/sweep.py --task covid=covid:data/COVID-CT --checkpoints random spark --out results/results.csv

The same options and exit status as ``medssl sweep`` (medssl/commands/sweep.py).
"""
import sys

from medssl.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
