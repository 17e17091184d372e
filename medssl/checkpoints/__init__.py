"""The one checkpoint loader (ours and the study's released formats), safe by default."""
from .formats import CheckpointFormat
from .loader import CheckpointError, LoadReport, load_backbone, read_backbone, read_input
from .registry import CHECKPOINTS_ENV, RELEASED, checkpoint_dir, local_path
from .safe_pickle import UnsafeCheckpointError, safe_load

__all__ = ["load_backbone", "read_backbone", "read_input", "LoadReport", "CheckpointError", "CheckpointFormat",
           "RELEASED", "CHECKPOINTS_ENV", "checkpoint_dir", "local_path", "safe_load",
           "UnsafeCheckpointError"]
