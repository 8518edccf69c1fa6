"""Private helpers shared by the loaders of the user's own data (image folder, table, text).

Reading uploads with a size limit, checking split fractions, stratified seeded splits, and the
classification Dataset over the splits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kdcore.data.base import Dataset, SplitData
from kdcore.validation import check_int_range, check_range

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # 50 MB: the largest upload read unless max_bytes says otherwise
LOCAL_MAX_BYTES = 4 * 2**30  # a data file the user names by its path (a job, the app's path field): 4 GiB
_MAX_BYTES_CEILING = 1 << 40  # a sanity bound for the max_bytes argument itself


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def check_max_bytes(max_bytes: Any, *, where: str) -> int:
    """max_bytes: a positive integer number of bytes."""
    return check_int_range("max_bytes", max_bytes, 1, _MAX_BYTES_CEILING, where=where)


def too_large(what: str, size: int, max_bytes: int, *, where: str, fix: str = "Use a smaller file") -> ValueError:
    """The error for an input over the size limit, with the way out."""
    return ValueError(
        f"{what}: {size:,} bytes ({_mb(size)}), over the limit "
        f"max_bytes={max_bytes:,} ({_mb(max_bytes)}) of {where}. {fix}, or pass a larger "
        f"max_bytes if this machine has the memory for it."
    )


def read_source(source: Any, *, name: str, where: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes of a path, a bytes object or a binary file-like object (an upload), and its file name.

    Refuses a source larger than max_bytes before reading all of it.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise too_large(f"The '{name}' argument's size", len(data), max_bytes, where=where)
        return data, None
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, name=name, where=where, max_bytes=max_bytes)
    if hasattr(source, "read"):
        return _read_file_object(source, name=name, where=where, max_bytes=max_bytes)
    raise ValueError(
        f"The '{name}' argument of {where} must be a file path, bytes, or a binary file object. "
        f"Got {type(source).__name__} instead."
    )


def _read_path(source: str | os.PathLike, *, name: str, where: str, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and name of the file at `source`; refuses a folder, a missing file or one over max_bytes."""
    path = Path(source)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # e.g. a name too long to be a path
        is_file = is_dir = False
    if not is_file:
        what = "a folder" if is_dir else "nothing (no such file)"
        shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
        hint = (
            " To pass the contents themselves, pass bytes (for text: text.encode('utf-8'))."
            if isinstance(source, str) and not is_dir
            else ""
        )
        raise ValueError(
            f"The '{name}' argument of {where} must be a path to a file. Got {shown!r}, "
            f"which is {what}. Check the path.{hint}"
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise too_large(f"The size of the file {path.name!r}", size, max_bytes, where=where)
    return path.read_bytes(), path.name


def _read_file_object(source: Any, *, name: str, where: str, max_bytes: int) -> tuple[bytes, str | None]:
    """At most max_bytes of a binary file object (an upload) and its file name, if it has one."""
    data = source.read(max_bytes + 1)
    if isinstance(data, str):
        raise ValueError(
            f"The '{name}' argument of {where} must be opened in binary mode ('rb'). "
            f"Got a text-mode file object instead."
        )
    if len(data) > max_bytes:
        raise ValueError(
            f"The '{name}' upload of {where} is larger than max_bytes={max_bytes:,} "
            f"({_mb(max_bytes)}). Use a smaller file, or pass a larger max_bytes."
        )
    file_name = getattr(source, "name", None)
    return bytes(data), (Path(file_name).name if isinstance(file_name, str) else None)


def classification_dataset(
    name: str, splits: dict[str, SplitData], class_names: list[str], *, description: str
) -> Dataset:
    """The classification Dataset over ready splits (inputs [N, ...], targets [N] class ids) of the user's data."""
    return Dataset(
        name=name,
        task="classification",
        build=lambda: splits,
        num_classes=len(class_names),
        class_names=class_names,
        description=description,
    )


def check_fractions(val_fraction: Any, test_fraction: Any, *, where: str) -> tuple[float, float]:
    """val and test fractions, each in (0, 1), leaving some data for training."""
    v = check_range("val_fraction", val_fraction, 0.0, 1.0, where=where, lo_open=True, hi_open=True)
    t = check_range("test_fraction", test_fraction, 0.0, 1.0, where=where, lo_open=True, hi_open=True)
    if v + t >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction of {where} must be below 1, to leave data for training. "
            f"Got {v} + {t} = {v + t}. Lower one of them (0.15 each is usual)."
        )
    return v, t


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, *, class_names: list[str], where: str
) -> dict[str, np.ndarray]:
    """Seeded, stratified train/val/test indices into `labels` ([N] int class ids).

    Split sizes are round(fraction * N), at least one per class; test is split off first, then val
    from the rest, each with scikit-learn's train_test_split (stratify=labels), so every split keeps
    the class proportions up to rounding.
    """
    counts = np.bincount(labels, minlength=len(class_names))
    smallest = int(np.argmin(counts))
    if counts[smallest] < 3:
        raise ValueError(
            f"{where} needs at least 3 samples of every class (one each for train, val and test). "
            f"Got {int(counts[smallest])} of class {class_names[smallest]!r}. "
            f"Add samples of that class, or leave it out."
        )
    n, k = len(labels), len(class_names)
    n_test = max(k, round(test_fraction * n))  # at least one sample per class in each held-out split
    n_val = max(k, round(val_fraction * n))
    if n - n_test - n_val < k:
        raise ValueError(
            f"{where} has too few samples for stratified train/val/test splits: {n} samples in {k} "
            f"classes, of which val takes {n_val} and test {n_test} (at least one per class each), "
            f"leaving {n - n_test - n_val} for training, fewer than the {k} classes. "
            f"Add samples, or lower val_fraction/test_fraction."
        )
    from sklearn.model_selection import train_test_split  # imported here: scikit-learn takes seconds to import

    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=labels)
    train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=labels[rest])
    return {"train": train, "val": val, "test": test}


def check_seed(seed: Any, *, where: str) -> int:
    return check_int_range("seed", seed, 0, 2**32 - 1, where=where)


def check_split_options(
    val_fraction: Any, test_fraction: Any, seed: Any, max_bytes: Any, *, where: str
) -> tuple[float, float, int, int]:
    """The checked (val_fraction, test_fraction, seed, max_bytes) every loader of the user's data takes."""
    vf, tf = check_fractions(val_fraction, test_fraction, where=where)
    return vf, tf, check_seed(seed, where=where), check_max_bytes(max_bytes, where=where)
