"""Released checkpoints, by short name: the study's ResNet-50s (Google Drive ids published with
its code) and torchvision's ImageNet weights (the baseline every method should beat).

The same ids appear elsewhere under other labels, so the loader identifies a file by its keys,
never by its name; ``format`` here is what the keys should show. A download is checked against
``sha256`` once a file's checksum is recorded, else against the sha256 prefix its file name
carries (torchvision's ``resnet50-0676ba61.pth``, as torch.hub checks it); with neither, the
download prints the checksum it computed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torchvision.models import ResNet18_Weights, ResNet50_Weights

from ..checksums import hash_prefix
from .formats import CheckpointFormat

CHECKPOINTS_ENV = "MEDSSL_CHECKPOINTS"


@dataclass(frozen=True)
class Released:
    """One released checkpoint: its short name, the method that made it, the ResNet it holds,
    where to fetch it (a Google Drive id or a plain address), the file name it is saved under,
    and the format its keys should show."""
    name: str
    method: str
    arch: str
    filename: str
    format: CheckpointFormat
    gdrive_id: str | None = None
    address: str | None = None
    sha256: str | None = None

    def __post_init__(self):
        if (self.gdrive_id is None) == (self.address is None):
            raise ValueError(f"released checkpoint {self.name!r}: give a Google Drive id or an address")

    @property
    def url(self) -> str:
        """Where it is downloaded from."""
        return self.address or f"https://drive.google.com/uc?export=download&id={self.gdrive_id}"

    @property
    def expected_sha256(self) -> str | None:
        """The whole sha256 if recorded, else the prefix in the file name, else None."""
        return self.sha256 or hash_prefix(self.filename)


def _torchvision(name: str, arch: str, weights) -> Released:
    """torchvision's ImageNet weights, from torchvision's address, under its file name."""
    return Released(name, "imagenet", arch, weights.url.rsplit("/", 1)[1], CheckpointFormat.IMAGENET,
                    address=weights.url)


RELEASED = {r.name: r for r in [
    Released("byol", "byol", "resnet50", "byol_study.ckpt", CheckpointFormat.BYOL_RELEASE,
             gdrive_id="1eBZYl1rXkKJxz42Wu75uzb1kLg8FTv1H"),
    Released("swav", "swav", "resnet50", "swav_study.ckpt", CheckpointFormat.SWAV_RELEASE,
             gdrive_id="11OWRzifq_BXrcFMZ13H0HwS4UGcaiAn_"),
    Released("mocov2", "mocov2", "resnet50", "mocov2_study.ckpt", CheckpointFormat.MOCO_RELEASE,
             gdrive_id="1hUr_6XdYxjB66ZYEGTqE7b8I88IN9a1l"),
    Released("spark", "spark", "resnet50", "spark_study.pth", CheckpointFormat.SPARK_RELEASE,
             gdrive_id="1kYFS67jH9s8kAmhNyf5wlRj_Gh9vTK_H"),
    # the study's architecture; the quick configs' ResNet-18 under its own name
    _torchvision("imagenet", "resnet50", ResNet50_Weights.IMAGENET1K_V1),
    _torchvision("imagenet-resnet18", "resnet18", ResNet18_Weights.IMAGENET1K_V1),
]}


def checkpoint_dir(folder: str | Path | None = None) -> Path:
    """Where released checkpoints are kept: ``folder`` if given, else $MEDSSL_CHECKPOINTS, else
    ``checkpoints/`` in the working directory (never a place inside the installed package)."""
    chosen = folder or os.environ.get(CHECKPOINTS_ENV)
    return Path(chosen) if chosen else Path.cwd() / "checkpoints"


def local_path(name: str, folder: str | Path | None = None) -> Path:
    """Where the released checkpoint ``name`` is (or will be, once downloaded)."""
    return checkpoint_dir(folder) / RELEASED[name].filename


def released_alternatives(name: str, arch: str) -> list[str]:
    """Released checkpoints of the same method as ``name`` that hold an ``arch``."""
    method = RELEASED[name].method
    return [r.name for r in RELEASED.values() if r.method == method and r.arch == arch]
