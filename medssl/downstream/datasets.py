"""Public downstream datasets: where they live and how to lay them out as the loaders expect."""
from __future__ import annotations

from pathlib import Path

from ..download import DownloadError, extract_zip, fetch  # noqa: F401  (DownloadError: part of this API)

ZENODO_MEDMNIST = "https://zenodo.org/records/10519652/files"
COVID_CT = "https://github.com/UCSD-AI4H/COVID-CT/raw/master"
# OrganSMNIST (MedMNIST v2 / MedMNIST+): file name and MD5 per image size.
ORGANSMNIST = {28: ("organsmnist.npz", "9ab87b696fb54e2a387ebe992d6ed5f1"),
               64: ("organsmnist_64.npz", "53a6d115339d874c25e309a994ff46d3"),
               128: ("organsmnist_128.npz", "ded0c5fa01a95dc4978b956f613e9b8e"),
               224: ("organsmnist_224.npz", "b354719e553fbbb2513d5533f52a4cb1")}
COVID_FILES = ["Images-processed/CT_COVID.zip", "Images-processed/CT_NonCOVID.zip"] + [
    f"Data-split/{c}/{s}CT_{c}.txt" for c in ("COVID", "NonCOVID") for s in ("train", "val", "test")]


def organsmnist(out: Path, size: int = 28, base_url: str = ZENODO_MEDMNIST, md5: str | None = None) -> Path:
    name, known = ORGANSMNIST[size]
    url = f"{base_url}/{name}?download=1" if base_url == ZENODO_MEDMNIST else f"{base_url}/{name}"
    fetch(url, out / name, algorithm="md5", expected=md5 or known)
    return out / name


def covid(out: Path, base_url: str = COVID_CT) -> Path:
    """Images and official split lists of UCSD-AI4H COVID-CT, laid out under ``out``."""
    for rel in COVID_FILES:
        path = out / rel
        fetch(f"{base_url}/{rel}", path)
        if path.suffix == ".zip":  # flattened: the archives hold CT_COVID/<image>
            extract_zip(path, path.parent / path.stem)
    return out
