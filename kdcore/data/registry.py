"""The registry of shipped and generated datasets: ``get_dataset(name)``."""

from __future__ import annotations

import functools

from kdcore.data.base import Dataset
from kdcore.data.digits import digits
from kdcore.data.shapes import shapes, shapes_multilabel
from kdcore.data.tinylang import tinylang

DATASETS = {"digits": digits, "shapes": shapes, "shapes_multilabel": shapes_multilabel, "tinylang": tinylang}


@functools.cache
def get_dataset(name: str) -> Dataset:
    """The named built-in dataset, cached: every caller shares one instance, so never mutate it.

    Splits are built on first use, deterministically (fixed seeds), and kept in memory.
    """
    if name not in DATASETS:
        raise ValueError(f"The 'name' argument of get_dataset must be one of {sorted(DATASETS)}. Got {name!r} instead.")
    return DATASETS[name]()
