"""Checksums of files on disk, shared by the downloader and the slice store."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

# torch.hub's convention: a weight file named ``name-<first hex digits of its sha256>.ext``
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")
MIN_PREFIX = 8  # hex digits; a shorter prefix would prove little


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path`` with a hashlib ``algorithm``, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def hash_prefix(name: str) -> str | None:
    """The sha256 prefix a file name carries (``resnet50-0676ba61.pth`` -> ``0676ba61``), if any."""
    found = HASH_IN_NAME.search(name)
    return found[1] if found else None


def check_expected(expected: str, algorithm: str = "sha256") -> str:
    """``expected`` in lower case if it is a whole ``algorithm`` hex digest or a prefix of one of
    at least ``MIN_PREFIX`` digits (torch.hub's check); else ValueError saying so."""
    digits = hashlib.new(algorithm).digest_size * 2
    expected = expected.lower()
    if not re.fullmatch(r"[0-9a-f]+", expected) or not MIN_PREFIX <= len(expected) <= digits:
        raise ValueError(f"{expected!r} is neither a {digits}-digit {algorithm} hex digest nor a "
                         f"prefix of one of at least {MIN_PREFIX} digits")
    return expected


def digest_matches(digest: str, expected: str, algorithm: str = "sha256") -> bool:
    """Whether the ``algorithm`` hex ``digest`` is ``expected``, or starts with it when
    ``expected`` is a prefix (see ``check_expected``)."""
    return digest.startswith(check_expected(expected, algorithm))
