"""One way to fetch a file: gdown (progress bar, resume of partial files), then a checksum."""
from __future__ import annotations

import hashlib
from pathlib import Path


class DownloadError(RuntimeError):
    """The file could not be fetched, or it is not the expected one."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def fetch(url: str | None, target: Path, *, gdrive_id: str | None = None,
          algorithm: str = "sha256", expected: str | None = None) -> str:
    """Download ``url`` (or a Google Drive file) to ``target`` unless it is there already, and
    return its checksum; a mismatch with ``expected`` moves the file aside and raises."""
    import gdown

    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        source = url or f"Google Drive file {gdrive_id}"
        try:
            result = (gdown.download(url=url, output=str(target), quiet=False, resume=True) if url
                      else gdown.download(id=gdrive_id, output=str(target), quiet=False, resume=True))
        except Exception as err:  # gdown raises requests' errors and its own
            result, reason = None, f"{type(err).__name__}: {err}"
        else:
            reason = "the server sent no file"
        if result is None or not target.exists():
            raise DownloadError(f"cannot download {source} ({reason}). Offline? Fetch it in a "
                                f"browser, save it as {target} and run again to check it. A partial "
                                "download is kept and resumed next time.")
    digest = file_digest(target, algorithm)
    if expected and digest != expected:
        bad = target.with_name(target.name + ".bad")
        target.replace(bad)
        raise DownloadError(f"{target.name}: checksum mismatch ({algorithm} {digest}, expected "
                            f"{expected}); moved to {bad}. Run again to download it afresh.")
    return digest
