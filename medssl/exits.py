"""One exit-status rule for every command (the README's table):

0 finished; 1 could not run (the error names the file and what to do); 2 finished, with items
skipped (listed in the command's report); 128 + the signal's number when a signal stopped it
(130 for Ctrl-C, 143 for SIGTERM), after saving what a rerun needs and saying how to go on.
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager

FINISHED, COULD_NOT_RUN, SKIPPED = 0, 1, 2


def signal_status(number: int) -> int:
    return 128 + number


@contextmanager
def stopped_by_signal(then: str):
    """Exit 128 + signal, with ``stopped by SIG...; <then>``, when Ctrl-C or SIGTERM stops the
    work inside, also where Lightning turns them into its own exits (SIGTERM: 0, Ctrl-C: 1)."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    seen: list[int] = []

    def on_sigint(number, frame):
        seen.append(number)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except SIGTERMException:
        print(f"stopped by SIGTERM; {then}", file=sys.stderr)
        raise SystemExit(signal_status(signal.SIGTERM)) from None
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, SystemExit) and not seen:
            raise
        print(f"stopped by SIGINT; {then}", file=sys.stderr)
        raise SystemExit(signal_status(signal.SIGINT)) from None
    finally:
        signal.signal(signal.SIGINT, previous)
