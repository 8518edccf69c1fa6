"""Deterministic split helpers shared by the generated and bundled datasets."""

from __future__ import annotations

import numpy as np


def _split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation of range(n) cut into train/val/test by ``fractions`` (summing to 1)."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
