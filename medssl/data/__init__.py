"""Data: the slice store, ingestion, phantom data, intensity mapping."""
from .store import SliceStore, SliceStoreWriter, StoreError

__all__ = ["SliceStore", "SliceStoreWriter", "StoreError"]
