"""Ingestion of DICOM series, NIfTI volumes and image folders into a slice store."""
from ..errors import UnreadableInput
from .pipeline import IngestError, Options, Summary, ingest
from .thin import DEFAULT_THRESHOLD

__all__ = ["ingest", "Options", "Summary", "IngestError", "UnreadableInput", "DEFAULT_THRESHOLD"]
