import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from medssl.download import DownloadError
from medssl.downstream import load_task
from medssl.downstream.formats import covid

ROOT = Path(__file__).resolve().parents[1]


def download(*args):
    return subprocess.run([sys.executable, str(ROOT / "Downstream" / "download.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_organsmnist_download_checks_md5_and_loads(server, tmp_path):
    served, base = server
    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.integers(0, 255, (6, 28, 28), dtype=np.uint8) if k == "images"
                           else np.array([[0], [1], [2], [0], [1], [2]]))
              for s in ("train", "val", "test") for k in ("images", "labels")}
    np.savez(served / "organsmnist.npz", **arrays)
    md5 = hashlib.md5((served / "organsmnist.npz").read_bytes()).hexdigest()
    wrong = download("organsmnist", "--out", tmp_path / "a", "--base-url", base)  # published MD5
    assert wrong.returncode == 1 and "checksum mismatch" in wrong.stderr
    ok = download("organsmnist", "--out", tmp_path / "b", "--base-url", base, "--md5", md5)
    assert ok.returncode == 0, ok.stderr
    task = load_task("medmnist", tmp_path / "b" / "organsmnist.npz")
    assert len(task.classes) == 3 and len(task.splits["test"]) == 6


def png(value: int) -> bytes:
    from PIL import Image

    image = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(image, format="PNG")
    return image.getvalue()


def covid_image(cls: str, i: int) -> bytes:
    return png(50 * i + len(cls))


def serve_covid(served: Path, extra: dict | None = None) -> dict[str, bytes]:
    """COVID-CT as published (3 images per class, one per split), plus ``extra`` zip entries
    of CT_COVID.zip; returns the images by file name."""
    images = {}
    for cls in ("COVID", "NonCOVID"):
        entries = {f"CT_{cls}/{cls}_{i}.png": covid_image(cls, i) for i in range(3)}
        images.update({Path(name).name: data for name, data in entries.items()})
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in [*entries.items(), *((extra or {}).items() if cls == "COVID" else [])]:
                with pytest.warns(UserWarning) if name in archive.NameToInfo else nullcontext():
                    archive.writestr(name, data)
        (served / "Images-processed").mkdir(exist_ok=True)
        (served / "Images-processed" / f"CT_{cls}.zip").write_bytes(buffer.getvalue())
        (served / "Data-split" / cls).mkdir(parents=True, exist_ok=True)
        for i, split in enumerate(("train", "val", "test")):
            (served / "Data-split" / cls / f"{split}CT_{cls}.txt").write_text(f"{cls}_{i}.png\n")
    return images


def assert_all_images(out: Path, images: dict[str, bytes]):
    for name, data in images.items():
        folder = out / "Images-processed" / ("CT_NonCOVID" if name.startswith("Non") else "CT_COVID")
        assert (folder / name).read_bytes() == data, name


@pytest.mark.slow
def test_covid_download_builds_the_expected_layout(server, tmp_path):
    served, base = server
    serve_covid(served)
    proc = download("covid", "--out", tmp_path / "covid", "--base-url", base)
    assert proc.returncode == 0, proc.stderr
    task = load_task("covid", tmp_path / "covid")
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]


KILLED_EXTRACTION = textwrap.dedent("""
    import sys, time, zipfile
    from pathlib import Path
    from medssl.download import extract_zip

    real, opened = zipfile.ZipFile.open, []
    def open_then_hang(self, name, *args, **kwargs):
        opened.append(name)
        if len(opened) == 2:  # the second image
            Path(sys.argv[3]).touch()
            time.sleep(120)
        return real(self, name, *args, **kwargs)
    zipfile.ZipFile.open = open_then_hang
    extract_zip(Path(sys.argv[1]), Path(sys.argv[2]))
""")


def test_extraction_killed_midway_is_redone_on_rerun(server, tmp_path):
    served, base = server
    images = serve_covid(served)
    out, started = tmp_path / "covid", tmp_path / "extracting"
    archive = out / "Images-processed" / "CT_COVID.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes((served / "Images-processed" / "CT_COVID.zip").read_bytes())
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXTRACTION, str(archive),
                             str(archive.with_suffix("")), str(started)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "extraction never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    covid.download(out, base)
    assert_all_images(out, images)
    assert not list(archive.parent.glob(".*"))  # no partial folder left


def test_images_missing_after_extraction_are_restored(server, tmp_path):
    served, base = server
    images = serve_covid(served)
    out = tmp_path / "covid"
    covid.download(out, base)
    (out / "Images-processed" / "CT_COVID" / "COVID_1.png").unlink()
    (out / "Images-processed" / "CT_NonCOVID" / "NonCOVID_2.png").write_bytes(b"cut")
    covid.download(out, base)
    assert_all_images(out, images)


def test_zip_entries_with_the_same_name_are_refused(server, tmp_path):
    served, base = server
    serve_covid(served, extra={"CT_COVID/more/COVID_0.png": png(7)})
    with pytest.raises(DownloadError, match=r"CT_COVID\.zip.*CT_COVID/COVID_0\.png.*"
                                                     r"CT_COVID/more/COVID_0\.png"):
        covid.download(tmp_path / "covid", base)
    assert not (tmp_path / "covid" / "Images-processed" / "CT_COVID").exists()


def test_identical_duplicate_entries_are_extracted_once(server, tmp_path):
    served, base = server
    images = serve_covid(served, extra={"CT_COVID/COVID_0.png": covid_image("COVID", 0)})
    covid.download(tmp_path / "covid", base)
    assert_all_images(tmp_path / "covid", images)


@pytest.mark.slow
def test_download_offline_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = download("organsmnist", "--out", tmp_path, "--base-url", f"http://127.0.0.1:{port}")
    assert proc.returncode == 1 and "Offline?" in proc.stderr
