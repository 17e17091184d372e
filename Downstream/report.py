"""Does pre-training help? Verdicts, tables and plots from results.csv: ``medssl report``.

    python Downstream/report.py results/results.csv [--baseline random]

The same options and exit status as ``medssl report`` (medssl/commands/report.py).
"""
import sys

from medssl.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
