"""One way to fetch a file: gdown (progress bar, resume of partial files), then a checksum;
and one way to unpack a zip so that an interrupted extraction is noticed and done again."""
from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from .checksums import check_expected, digest_matches, file_digest
from .files import atomic_write_bytes


class DownloadError(RuntimeError):
    """The file could not be fetched, or it is not the expected one."""


def fetch(url: str | None, target: Path, *, gdrive_id: str | None = None,
          algorithm: str = "sha256", expected: str | None = None) -> str:
    """Download ``url`` (or a Google Drive file) to ``target`` unless it is there already, and
    return its checksum. ``expected``: the whole checksum, or a prefix of it (torch.hub's
    ``name-<sha256 prefix>.pth``); a mismatch moves the file aside and raises."""
    import gdown

    try:
        expected = expected and check_expected(expected, algorithm)
    except ValueError as err:
        raise DownloadError(f"{target.name}: expected {algorithm}: {err}") from err
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
    if expected and not digest_matches(digest, expected, algorithm):
        bad = target.with_name(target.name + ".bad")
        target.replace(bad)
        wanted = expected if len(expected) == len(digest) else f"one starting with {expected}"
        raise DownloadError(f"{target.name}: checksum mismatch ({algorithm} {digest}, expected "
                            f"{wanted}); moved to {bad}. Run again to download it afresh.")
    return digest


def contents_file(folder: Path) -> Path:
    """Beside ``folder``: what a complete extraction put in it (written last, atomically)."""
    return folder.with_name(folder.name + ".contents.json")


def _extraction_problem(archive: Path, folder: Path) -> str | None:
    """Why ``folder`` is not the complete extraction of ``archive``, or None."""
    try:
        record = json.loads(contents_file(folder).read_text())
    except FileNotFoundError:
        return "not extracted yet" if not folder.exists() else "an earlier extraction did not finish"
    except ValueError:
        return f"{contents_file(folder).name} is unreadable"
    if record.get("archive_bytes") != archive.stat().st_size:
        return f"{archive.name} changed since it was extracted"
    for name, size in record["files"].items():
        file = folder / name
        if not file.is_file() or file.stat().st_size != size:
            return f"{name} is missing or damaged"
    return None


def _files(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """Entries to extract by base name (folders and __MACOSX left out); entries that share a
    name must be the same file (size and CRC), else DownloadError names them."""
    chosen: dict[str, zipfile.ZipInfo] = {}
    clashes = []
    for info in archive.infolist():
        if info.is_dir() or "__MACOSX" in Path(info.filename).parts:
            continue
        name = Path(info.filename).name
        first = chosen.setdefault(name, info)
        if (first.CRC, first.file_size) != (info.CRC, info.file_size):
            clashes.append(f"{first.filename} and {info.filename}")
    if clashes:
        raise DownloadError(f"{source}: entries with the same file name but different contents "
                            f"would overwrite each other: {'; '.join(clashes[:5])}"
                            f"{f' (and {len(clashes) - 5} more)' if len(clashes) > 5 else ''}.")
    return chosen


def extract_zip(archive: Path, folder: Path) -> bool:
    """Extract the files of ``archive`` into ``folder`` by their base names, unless a complete
    extraction is there already (checked against its contents file: every file, its size).
    Extraction goes to a hidden folder renamed into place; the contents file is written last,
    so a killed extraction is redone on the next call. Returns whether it extracted."""
    problem = _extraction_problem(archive, folder)
    if problem is None:
        return False
    print(f"extracting {archive} to {folder} ({problem})", file=sys.stderr)
    record = contents_file(folder)
    record.unlink(missing_ok=True)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as source:
            files = _files(source, archive)
            partial.mkdir(parents=True)
            for name, info in files.items():
                with source.open(info) as src, open(partial / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, EOFError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise DownloadError(f"{archive}: damaged zip ({err}). Delete it and run again to download "
                            "it afresh.") from err
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    atomic_write_bytes(record, json.dumps({"archive": archive.name, "archive_bytes": archive.stat().st_size,
                                           "files": {n: i.file_size for n, i in files.items()}},
                                          indent=1).encode())
    return True
