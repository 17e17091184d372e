"""Worker processes of an ingestion run: they end with the process that started them."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def init_worker(parent: int) -> None:
    """ProcessPoolExecutor initializer: default signals, one torch thread, die with ``parent``."""
    import torch

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler inherited from the parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    die_with_parent(parent)
    torch.set_num_threads(1)


def die_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this process when ``parent`` ends, even by ``kill -9``.

    On Linux the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG); everywhere,
    a daemon thread watches for this process being handed to another parent.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    current_parent = os.getppid()
    if not _alive(parent):  # it ended before the line above
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, current_parent, poll_s), daemon=True,
                     name="parent-watch").start()


def _watch(parent: int, current_parent: int, poll_s: float) -> None:
    while os.getppid() == current_parent and _alive(parent):
        time.sleep(poll_s)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
