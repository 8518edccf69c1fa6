"""The user's table: a CSV or Parquet file of numeric features with a label column.

Features are standardised with the mean and standard deviation of the train split only (so no
statistic leaks from val/test); labels of any type become class ids in the sorted order of their
values, and the values become the class names.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from kdcore.data._user_common import (
    DEFAULT_MAX_BYTES,
    check_split_options,
    classification_dataset,
    read_source,
    stratified_split,
)
from kdcore.data.base import SPLITS, Dataset, SplitData

_WHERE = "load_table"
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
_MAX_SHOWN = 30  # columns named in a message


def load_table(
    path_or_buffer: Any,
    *,
    label_column: str,
    feature_columns: list[str] | None = None,
    format: Literal["csv", "tsv", "parquet"] | None = None,
    sep: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> Dataset:
    """A classification Dataset from a CSV or Parquet table with one row per sample.

    path_or_buffer:  a file path, bytes, or a binary file object (e.g. an upload; its `.name` gives the format)
    label_column:    the column holding each row's class (strings or integers)
    feature_columns: the feature columns (default: every column except the label); all must be numeric
    format:          "csv", "tsv" or "parquet" (default: from the file name's suffix)
    sep:             CSV separator (default "," for csv, tab for tsv)
    val_fraction, test_fraction: shares of the rows held out, stratified by class, seeded by `seed`
    max_bytes:       refuse files larger than this
    name:            the Dataset's name (default: the file name)

    Splits hold inputs [N, F] float32 standardised features and targets [N] long class ids. The
    returned Dataset has a `load_report` dict: rows, feature names, the train split's mean and std
    per feature (to standardise new rows the same way) and rows per class.
    """
    _check_label_column(label_column)
    vf, tf, seed, max_bytes = check_split_options(val_fraction, test_fraction, seed, max_bytes, where=_WHERE)
    data, file_name = read_source(path_or_buffer, name="path_or_buffer", where=_WHERE, max_bytes=max_bytes)
    fmt = _resolve_format(format, file_name)
    df = _parse(data, fmt, sep)
    features = _check_columns(df, label_column, feature_columns, fmt, sep)
    x = _numeric_features(df, features)  # [N, F] float64
    y, class_names = _encode_labels(df[label_column], label_column)  # [N], K names

    parts = stratified_split(y, vf, tf, seed, class_names=class_names, where=_WHERE)
    mean, std = _train_stats(x, parts["train"])  # [F], [F]
    z = torch.from_numpy(((x - mean) / std).astype(np.float32))  # [N, F]
    t = torch.from_numpy(y)
    splits = {s: SplitData(z[torch.from_numpy(parts[s])], t[torch.from_numpy(parts[s])]) for s in SPLITS}

    shown = name or file_name or "table"
    ds = _table_dataset(shown, splits, class_names, n_rows=len(df), n_features=len(features), label_column=label_column)
    ds.load_report = _load_report(len(df), fmt, label_column, features, mean, std, y, class_names, parts)
    return ds


def _load_report(
    n_rows: int,
    fmt: str,
    label_column: str,
    features: list[str],
    mean: np.ndarray,
    std: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    parts: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The Dataset's load_report: rows, features, the train mean [F] and std [F], rows per class and split."""
    counts = np.bincount(y, minlength=len(class_names))  # [K]
    return {
        "rows": n_rows,
        "format": fmt,
        "label_column": label_column,
        "features": features,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "per_class": {c: int(n) for c, n in zip(class_names, counts)},
        "split_sizes": {s: int(len(parts[s])) for s in SPLITS},
    }


def _check_label_column(label_column: Any) -> None:
    if not isinstance(label_column, str) or not label_column:
        raise ValueError(
            f"The 'label_column' parameter of {_WHERE} must be a column name (a non-empty string). "
            f"Got {label_column!r} instead."
        )


def _table_dataset(
    shown: str,
    splits: dict[str, SplitData],
    class_names: list[str],
    *,
    n_rows: int,
    n_features: int,
    label_column: str,
) -> Dataset:
    """The classification Dataset over the ready splits (its load_report is set by the caller)."""
    about = (
        f"{n_rows} rows with {n_features} numeric features and {len(class_names)} "
        f"classes from {shown!r} (label column {label_column!r})."
    )
    return classification_dataset(shown, splits, class_names, description=about)


def _train_stats(x: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and population std [F] of the train rows of x [N, F]; a constant column gets std 1
    (it stays constant, 0, instead of dividing by 0)."""
    mean = x[train].mean(axis=0)  # [F]
    std = x[train].std(axis=0)  # [F]
    return mean, np.where(std > 0, std, 1.0)


def _check_columns(df: pd.DataFrame, label_column: str, feature_columns: Any, fmt: str, sep: str | None) -> list[str]:
    """The feature column names; makes df's column names strings and refuses a missing label
    column, bad feature columns or a table without rows."""
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if label_column not in columns:
        raise ValueError(_missing_label_message(label_column, columns, fmt, sep))
    features = _resolve_features(feature_columns, label_column, columns)
    if len(df) == 0:
        raise ValueError(f"The table given to {_WHERE} has a header but no rows. Add one row per sample.")
    return features


def _resolve_format(format: Any, file_name: str | None) -> str:
    if format is not None:
        if format not in ("csv", "tsv", "parquet"):
            raise ValueError(
                f"The 'format' parameter of {_WHERE} must be 'csv', 'tsv', 'parquet' or None. Got {format!r} instead."
            )
        return format
    suffix = Path(file_name).suffix.lower() if file_name else ""
    if suffix not in _SUFFIXES:
        got = f"the file name {file_name!r}" if file_name else "no file name (bytes or an unnamed buffer)"
        raise ValueError(
            f"{_WHERE} reads the format from the file name's suffix (.csv, .tsv, .parquet, .pq). "
            f"Got {got}. Pass format='csv' or format='parquet'."
        )
    return _SUFFIXES[suffix]


def _parse(data: bytes, fmt: str, sep: str | None) -> pd.DataFrame:
    if fmt == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as err:  # pyarrow raises its own ArrowInvalid/OSError for a broken file
            raise ValueError(
                f"{_WHERE} could not read the data as Parquet ({type(err).__name__}: {err}). "
                f"Check that the file is a Parquet file, or pass format='csv' if it is text."
            ) from None
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ValueError(f"The 'sep' parameter of {_WHERE} must be a non-empty string or None. Got {sep!r} instead.")
    sep = sep or ("\t" if fmt == "tsv" else ",")
    try:
        return pd.read_csv(io.BytesIO(data), sep=sep, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"The table given to {_WHERE} is empty. Expected a header row naming the columns, then one row per sample."
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(
            f"The table given to {_WHERE} is not valid UTF-8 text (byte offset {err.start}). "
            f"Re-save it as UTF-8 CSV, or pass format='parquet' if it is a Parquet file."
        ) from None
    except (pd.errors.ParserError, ValueError) as err:
        raise ValueError(
            f"{_WHERE} could not read the data as {fmt.upper()} with separator {sep!r}: {err}. "
            f"Check the file, or pass the right sep=."
        ) from None


def _columns_text(columns: list[str]) -> str:
    head = ", ".join(repr(c) for c in columns[:_MAX_SHOWN])
    return head + (f", ... ({len(columns)} columns)" if len(columns) > _MAX_SHOWN else "")


def _missing_label_message(label_column: str, columns: list[str], fmt: str, sep: str | None) -> str:
    msg = (
        f"The 'label_column' parameter of {_WHERE} must name a column of the table. Got {label_column!r}; "
        f"the columns are: {_columns_text(columns)}."
    )
    close = difflib.get_close_matches(label_column, columns, n=1, cutoff=0.6)
    close = close or [c for c in columns if c.strip().lower() == label_column.strip().lower()]
    if close:
        msg += f" Did you mean {close[0]!r}?"
    elif fmt != "parquet" and len(columns) == 1 and any(s in columns[0] for s in ";\t|"):
        msg += " The header was read as one column: the separator may be different; pass sep=';' (or the one used)."
    else:
        msg += " Pass the name of the column that holds each row's class."
    return msg


def _resolve_features(feature_columns: Any, label_column: str, columns: list[str]) -> list[str]:
    if feature_columns is None:
        features = [c for c in columns if c != label_column]
    else:
        if isinstance(feature_columns, str) or not all(isinstance(c, str) for c in feature_columns):
            raise ValueError(
                f"The 'feature_columns' parameter of {_WHERE} must be a list of column names or None. "
                f"Got {feature_columns!r} instead."
            )
        features = list(feature_columns)
        missing = [c for c in features if c not in columns]
        if missing:
            raise ValueError(
                f"The 'feature_columns' parameter of {_WHERE} names columns the table does not have: "
                f"{missing}. The columns are: {_columns_text(columns)}."
            )
        if label_column in features:
            raise ValueError(
                f"The 'feature_columns' parameter of {_WHERE} must not include the label column "
                f"{label_column!r}: a model would see the answer. Remove it from feature_columns."
            )
        if len(set(features)) != len(features):
            raise ValueError(f"The 'feature_columns' parameter of {_WHERE} lists a column twice: {features}.")
    if not features:
        raise ValueError(
            f"{_WHERE} needs at least one feature column besides the label column {label_column!r}. "
            f"Got a table whose only column is the label."
        )
    return features


def _numeric_features(df: pd.DataFrame, features: list[str]) -> np.ndarray:
    """[N, F] float64 features; refuses non-numeric columns and missing or infinite values."""
    bad = [c for c in features if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))]
    if bad:
        examples = ", ".join(
            f"{c!r} ({df[c].dtype}, e.g. {df[c].dropna().iloc[0]!r})"
            if df[c].notna().any()
            else f"{c!r} ({df[c].dtype})"
            for c in bad[:_MAX_SHOWN]
        )
        raise ValueError(
            f"{_WHERE} needs numeric feature columns. Got {len(bad)} non-numeric column(s): {examples}. "
            f"Encode them as numbers, or leave them out with feature_columns=[...]."
        )
    x = df[features].to_numpy(dtype=np.float64)  # [N, F]
    _refuse_values(
        np.isnan(x),
        features,
        "feature values in every row",
        "missing (NaN) value(s) in {columns} column(s)",
        "Fill them in",
    )
    _refuse_values(np.isinf(x), features, "finite feature values", "infinite value(s)", "Replace them")
    return x


def _refuse_values(bad: np.ndarray, features: list[str], need: str, what: str, fix: str) -> None:
    """Refuse the values that bad [N, F] marks, counted per feature column; `what` may name {columns}."""
    per_column = bad.sum(axis=0)  # [F]
    if per_column.any():
        detail = ", ".join(f"{c!r}: {int(n)}" for c, n in zip(features, per_column) if n)
        got = what.format(columns=int((per_column > 0).sum()))
        raise ValueError(
            f"{_WHERE} needs {need}. Got {int(per_column.sum())} {got} ({detail}). {fix} or drop those rows."
        )


def _encode_labels(col: pd.Series, label_column: str) -> tuple[np.ndarray, list[str]]:
    """[N] int64 class ids and the class names, in the sorted order of the label values."""
    missing = int(col.isna().sum())
    if missing:
        raise ValueError(
            f"The label column {label_column!r} given to {_WHERE} has {missing} empty value(s). "
            f"Every row needs a class: fill them in or drop those rows."
        )
    if pd.api.types.is_float_dtype(col):
        if not np.all(np.mod(col.to_numpy(), 1) == 0):
            raise ValueError(
                f"The label column {label_column!r} given to {_WHERE} must hold classes. Got fractional "
                f"numbers (e.g. {col[np.mod(col, 1) != 0].iloc[0]!r}), as in a regression target. "
                f"Pick a column of class names or integer class ids."
            )
        col = col.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        values = sorted(col.unique().tolist())
    else:
        col = col.astype(str)
        values = sorted(col.unique().tolist())
    if len(values) < 2:
        raise ValueError(
            f"The label column {label_column!r} given to {_WHERE} must hold at least 2 classes. "
            f"Got only {str(values[0])!r} in all {len(col)} rows. Check the column, or add rows of "
            f"other classes."
        )
    ids = {v: i for i, v in enumerate(values)}
    y = col.map(ids).to_numpy(dtype=np.int64, copy=True)  # [N]
    return y, [str(v) for v in values]
