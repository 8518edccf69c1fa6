"""`digits`: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes).

Alpaydin & Kaynak (1998), UCI "Optical Recognition of Handwritten Digits"; shipped inside
scikit-learn, so nothing is downloaded. Pixels (0..16) are scaled to [0, 1].
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from kdcore.data._splits import _split_indices
from kdcore.data.base import Dataset, SplitData

SEED = 20240  # fixes the train/val/test permutation
FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test


def _load() -> tuple[np.ndarray, np.ndarray]:
    """Pixels [1797, 64] (0..16) and labels [1797] from scikit-learn's bundled CSV.

    Read straight from the installed package (importing scikit-learn takes seconds); falls back
    to ``sklearn.datasets.load_digits`` if the file has moved.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            table = np.loadtxt(path, delimiter=",")  # [N, 65]: 64 pixels, then the label
            return table[:, :-1], table[:, -1]
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no network

    bunch = load_digits()
    return bunch.data, bunch.target


def _build() -> dict[str, SplitData]:
    pixels, labels = _load()
    x = torch.from_numpy((pixels / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)  # [N, 1, 8, 8]
    y = torch.from_numpy(labels.astype(np.int64))  # [N]
    idx = _split_indices(len(y), FRACTIONS, SEED)
    return {name: SplitData(x[torch.from_numpy(i)], y[torch.from_numpy(i)]) for name, i in idx.items()}


def digits() -> Dataset:
    """The 8×8 digits dataset (60/20/20 split, fixed seed)."""
    return Dataset(
        name="digits",
        task="classification",
        build=_build,
        num_classes=10,
        class_names=[str(d) for d in range(10)],
        description="scikit-learn's bundled 8×8 grey-scale handwritten digits, 0 to 9 (1,797 images).",
    )
