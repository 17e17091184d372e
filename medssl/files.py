"""Writing files so that a kill or crash never leaves a half-written one in place."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it: flushed to disk, then
    renamed over ``path``, so readers see the old content or the new, never a part (the
    temporary file is this process's own: writers at once do not share it)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def umask_mode(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a new file gets from the user's umask (writers that create files
    0600, as safetensors' does, would keep them from a group that shares the run)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
