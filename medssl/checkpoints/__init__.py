"""The one checkpoint loader (ours and the study's released formats), safe by default."""
from .loader import CheckpointError, LoadReport, load_backbone, read_backbone
from .registry import RELEASED, checkpoint_dir, local_path
from .safe_pickle import UnsafeCheckpointError, safe_load

__all__ = ["load_backbone", "read_backbone", "LoadReport", "CheckpointError", "RELEASED",
           "checkpoint_dir", "local_path", "safe_load", "UnsafeCheckpointError"]
