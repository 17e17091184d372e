"""A short text summary of a slice store."""
from __future__ import annotations

import numpy as np


def describe_store(store, sample: int = 256) -> str:
    m = store.manifest
    picks = np.linspace(0, len(store) - 1, min(sample, len(store))).round().astype(int)
    values = np.stack([store[i] for i in picks]) if len(picks) else np.zeros((1, 1), np.int16)
    p1, p50, p99 = np.percentile(values, [1, 50, 99])
    lines = [
        f"store      {store.path}",
        f"slices     {len(store)} of {store.height}x{store.width} {store.dtype.name} ({store.units})",
        f"shards     {len(store.meta['shards'])}",
        f"patients   {m['patient_id'].nunique()}   series {m['series_uid'].nunique()}",
        f"modality   {', '.join(sorted(m['modality'].unique()))}",
        f"values     p1 {p1:.0f}  median {p50:.0f}  p99 {p99:.0f}  (from {len(picks)} slices)",
    ]
    if store.clip:
        lines.append(f"clip       {store.clip[0]}..{store.clip[1]}")
    return "\n".join(lines)
