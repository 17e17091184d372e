"""Training-set reduction: stratified, seeded and nested subsets."""
from __future__ import annotations

import numpy as np

DEFAULT_FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.01)


def class_orders(labels, seed: int) -> dict:
    """{class: its indices in a seeded shuffle}: the order every subset takes a prefix of."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return {c: rng.permutation(np.nonzero(labels == c)[0]) for c in np.unique(labels)}


def nested_subsets(labels, fractions=DEFAULT_FRACTIONS, seed: int = 0,
                   min_per_class: int = 2) -> dict[float, np.ndarray]:
    """{fraction: sorted indices}. Each class is shuffled once with ``seed`` and every fraction
    takes a prefix of it (``max(min_per_class, round(fraction * n_class))``, at most n_class),
    so for one seed a smaller subset always lies inside a larger one and class proportions are
    kept (up to the floor)."""
    orders = class_orders(labels, seed)
    out = {}
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fractions must be in (0, 1], got {fraction}")
        picks = [order[:min(len(order), max(min_per_class, int(round(fraction * len(order)))))]
                 for order in orders.values()]
        out[fraction] = np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
    return out


def per_class_subsets(labels, counts, seed: int = 0) -> dict[int, np.ndarray]:
    """{count: sorted indices}: ``count`` images of each class (all of a class that has fewer),
    prefixes of the same seeded order as ``nested_subsets``, so they are nested too."""
    orders = class_orders(labels, seed)
    out = {}
    for count in counts:
        if count < 1:
            raise ValueError(f"counts must be at least 1, got {count}")
        out[count] = np.sort(np.concatenate([order[:count] for order in orders.values()]))
    return out


def stratified_order(strata, seed: int = 0) -> np.ndarray:
    """Indices in a seeded order whose every prefix keeps the strata's proportions (each stratum
    shuffled once with ``seed``, as ``class_orders``, and interleaved by rank within it): the first
    ``n`` are a nested, stratified subset of ``n``."""
    orders = class_orders(strata, seed)
    keyed = [((rank + 0.5) / len(order), stratum, index) for stratum, order in orders.items()
             for rank, index in enumerate(order)]
    return np.asarray([index for _, _, index in sorted(keyed)], dtype=np.int64)
