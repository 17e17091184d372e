import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from medssl.downstream import load_task

ROOT = Path(__file__).resolve().parents[1]


def download(*args):
    return subprocess.run([sys.executable, str(ROOT / "Downstream" / "download.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


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


def test_covid_download_builds_the_expected_layout(server, tmp_path):
    served, base = server
    from PIL import Image

    for cls in ("COVID", "NonCOVID"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for i in range(3):
                image = io.BytesIO()
                Image.fromarray(np.full((8, 8), 50 * i, np.uint8)).save(image, format="PNG")
                archive.writestr(f"CT_{cls}/{cls}_{i}.png", image.getvalue())
        (served / "Images-processed").mkdir(exist_ok=True)
        (served / "Images-processed" / f"CT_{cls}.zip").write_bytes(buffer.getvalue())
        (served / "Data-split" / cls).mkdir(parents=True, exist_ok=True)
        for i, split in enumerate(("train", "val", "test")):
            (served / "Data-split" / cls / f"{split}CT_{cls}.txt").write_text(f"{cls}_{i}.png\n")
    proc = download("covid", "--out", tmp_path / "covid", "--base-url", base)
    assert proc.returncode == 0, proc.stderr
    task = load_task("covid", tmp_path / "covid")
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]


def test_download_offline_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = download("organsmnist", "--out", tmp_path, "--base-url", f"http://127.0.0.1:{port}")
    assert proc.returncode == 1 and "Offline?" in proc.stderr
