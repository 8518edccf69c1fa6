"""Argument checks shared by every loss, divergence and analysis.

Each check raises :class:`InvalidParameterError` (a ``ValueError``, and a ``TypeError`` too, as
scikit-learn's ``InvalidParameterError`` is) whose message names the argument, what was expected and what was
received, in the style of scikit-learn's parameter validation (CONVENTIONS.md §7). Checks run where
input enters a public function; private helpers trust their callers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor


class InvalidParameterError(ValueError, TypeError):
    """A public argument is out of range or of the wrong type.

    One error type for every check, subclassing both ``ValueError`` and ``TypeError`` (as
    scikit-learn's ``InvalidParameterError`` does), so callers may catch either.
    """


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def check_positive(name: str, value: Any, *, where: str, what: str = "a float") -> float:
    """A finite float > 0 (temperatures, T_norm); `what` names it in the error ("a latency in seconds")."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be {what} > 0. Got {_describe(value)} instead."
        ) from None
    if not math.isfinite(v) or v <= 0:
        raise InvalidParameterError(f"The '{name}' parameter of {where} must be {what} > 0. Got {value!r} instead.")
    return v


def check_range(
    name: str,
    value: Any,
    lo: float,
    hi: float,
    *,
    where: str,
    lo_open: bool = False,
    hi_open: bool = False,
    hint: str = "",
) -> float:
    """A float in [lo, hi], with either end optionally open."""
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    interval = f"{left}{lo}, {hi}{right}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        extra = f" {hint}" if hint else ""
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be a float in {interval}. Got {value!r} instead.{extra}"
        )
    return v


def check_nonnegative(name: str, value: Any, *, where: str) -> float:
    """A finite float >= 0 (loss weights)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < 0:
        raise InvalidParameterError(f"The '{name}' parameter of {where} must be a float >= 0. Got {value!r} instead.")
    return v


def check_int_range(name: str, value: Any, lo: int, hi: int, *, where: str) -> int:
    """An integer in [lo, hi]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int,))
        and not (isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point())
    ):
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be an integer in [{lo}, {hi}]. Got {_describe(value)} instead."
        )
    v = int(value)
    if not lo <= v <= hi:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be an integer in [{lo}, {hi}]. Got {v} instead."
        )
    return v


def check_tensor(name: str, x: Any, *, where: str, min_dim: int = 1, dims: int | None = None) -> Tensor:
    """A non-empty tensor of finite floats (±inf allowed only where ``allow_neg_inf`` callers say)."""
    if not isinstance(x, Tensor):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a torch.Tensor. Got {type(x).__name__} instead."
        )
    _check_shape(name, x, where=where, min_dim=min_dim, dims=dims)
    return x


def _check_shape(name: str, x: Tensor, *, where: str, min_dim: int, dims: int | None) -> None:
    """`x` has `dims` dimensions (when given), at least `min_dim`, and at least one element."""
    if dims is not None and x.dim() != dims:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must have {dims} dimensions. Got shape {tuple(x.shape)} instead."
        )
    if x.dim() < min_dim:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must have at least {min_dim} dimension(s). "
            f"Got shape {tuple(x.shape)} instead."
        )
    if x.numel() == 0:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} is empty (shape {tuple(x.shape)}): pass at least one sample."
        )


def check_logits(
    name: str, x: Any, *, where: str, min_dim: int = 2, dims: int | None = None, allow_neg_inf: bool = True
) -> Tensor:
    """Logits: a non-empty float tensor without NaN or +inf (-inf marks a masked entry)."""
    x = check_tensor(name, x, where=where, min_dim=min_dim, dims=dims)
    if not x.is_floating_point():
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a floating-point tensor. Got dtype {x.dtype} instead."
        )
    if x.shape[-1] == 0:
        raise InvalidParameterError(f"The '{name}' argument of {where} has no classes (last dimension 0).")
    bad = torch.isnan(x) | (x == math.inf)
    if not allow_neg_inf:
        bad = bad | torch.isinf(x)
    if bool(bad.any()):
        n = int(bad.sum())
        what = "NaN or inf" if not allow_neg_inf else "NaN or +inf"
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be finite ({'-inf marks a masked entry; ' if allow_neg_inf else ''}"
            f"no {what}). Got {n} such value(s) in a tensor of shape {tuple(x.shape)}."
        )
    if allow_neg_inf and bool(torch.isneginf(x).all(dim=-1).any()):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} has a row whose entries are all -inf: "
            f"every distribution needs at least one finite logit."
        )
    return x


def check_same_shape(student: Tensor, teacher: Tensor, *, where: str, cross_vocab_hint: bool = False) -> None:
    """Student and teacher logits must agree in shape; the class/vocabulary count is named apart."""
    if student.shape[:-1] != teacher.shape[:-1]:
        raise InvalidParameterError(
            f"student_logits and teacher_logits of {where} must have the same leading (batch/position) shape. "
            f"Got {tuple(student.shape)} for the student and {tuple(teacher.shape)} for the teacher."
        )
    if student.shape[-1] != teacher.shape[-1]:
        kind = "vocabulary" if cross_vocab_hint else "class"
        hint = (
            " Truncate both to the shared token ids, or use kind='uld', the cross-tokenizer divergence."
            if cross_vocab_hint
            else " Teacher and student must predict the same classes."
        )
        raise InvalidParameterError(
            f"The {kind} counts of {where} differ: the student has {student.shape[-1]}, "
            f"the teacher has {teacher.shape[-1]}.{hint}"
        )


def check_labels(labels: Any, batch: int, num_classes: int, *, where: str, name: str = "labels") -> Tensor:
    """Integer class labels, shape [B], each in [0, C)."""
    if not isinstance(labels, Tensor):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a torch.Tensor of class indices. Got {type(labels).__name__} instead."
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must hold integer class indices. Got dtype {labels.dtype} instead."
        )
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must have shape [{batch}] (one class index per sample). "
            f"Got shape {tuple(labels.shape)} instead."
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must hold class indices in [0, {num_classes - 1}]. "
            f"Got values from {int(labels.min())} to {int(labels.max())}."
        )
    return labels.long()


# --- added for kdcore.losses -------------------------------------------------------------------


def format_rows(rows: Tensor, limit: int = 10) -> str:
    """'[0, 3, 7]' for a 1-D index tensor, with '... (N in all)' past ``limit`` entries."""
    idx = rows.flatten().tolist()
    shown = ", ".join(str(i) for i in idx[:limit])
    return f"[{shown}{', ...' if len(idx) > limit else ''}]" + (f" ({len(idx)} in all)" if len(idx) > limit else "")


def check_multi_hot(
    name: str, x: Any, batch: int, num_classes: int, *, where: str, what: str = "multi-hot labels", hint: str = ""
) -> Tensor:
    """A [B, C] mask of 0/1 (bool, integer or float) with at least one positive per row -> bool tensor."""
    extra = f" {hint}" if hint else ""
    if not isinstance(x, Tensor):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a torch.Tensor of {what}, shape [{batch}, {num_classes}]. "
            f"Got {type(x).__name__} instead.{extra}"
        )
    if tuple(x.shape) != (batch, num_classes):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be {what} of shape [{batch}, {num_classes}] "
            f"(batch, classes). Got shape {tuple(x.shape)} instead.{extra}"
        )
    if x.dtype != torch.bool:
        if not bool(((x == 0) | (x == 1)).all()):
            raise InvalidParameterError(
                f"The '{name}' argument of {where} must hold only 0/1 (or bool) values. "
                f"Got values such as {x[(x != 0) & (x != 1)].flatten()[:3].tolist()}."
            )
        x = x != 0
    empty = (~x.any(dim=-1)).nonzero().flatten()
    if empty.numel():
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must mark at least one class per row (an empty strong set "
            f"is undefined). Rows {format_rows(empty)} have none."
        )
    return x


def check_finite_tensor(name: str, x: Any, *, where: str, min_dim: int = 1, dims: int | None = None) -> Tensor:
    """A non-empty floating-point tensor without NaN or ±inf (features, attention maps)."""
    x = check_tensor(name, x, where=where, min_dim=min_dim, dims=dims)
    if not x.is_floating_point():
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a floating-point tensor. Got dtype {x.dtype} instead."
        )
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be finite (no NaN or inf). "
            f"Got {int(bad.sum())} such value(s) in a tensor of shape {tuple(x.shape)}."
        )
    return x


def check_same_batch(student: Tensor, teacher: Tensor, *, where: str, student_name: str, teacher_name: str) -> None:
    """Student and teacher inputs must describe the same number of samples (dimension 0)."""
    if student.shape[0] != teacher.shape[0]:
        raise InvalidParameterError(
            f"{student_name} and {teacher_name} of {where} must have the same batch size. "
            f"Got {student.shape[0]} for the student (shape {tuple(student.shape)}) and "
            f"{teacher.shape[0]} for the teacher (shape {tuple(teacher.shape)})."
        )


def check_float_tensor(name: str, x: Any, *, where: str) -> Tensor:
    """A non-empty floating-point tensor with at least one dimension (values not inspected)."""
    x = check_tensor(name, x, where=where, min_dim=1)
    if not x.is_floating_point():
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a floating-point tensor. Got dtype {x.dtype} instead."
        )
    return x


def check_logit_rows(name: str, x: Any, *, where: str, keep: Tensor | None = None) -> bool:
    """Logits [..., V] checked like ``check_logits`` but with a min and a max reduction per row, so large
    LM logits ([positions, vocabulary]) need no full-size boolean masks. A row's maximum is NaN if
    the row holds a NaN, +inf if it holds +inf, and -inf if every entry is -inf. Only the rows that
    ``keep`` (bool [...]) marks are checked: a masked position may hold anything.
    Returns whether a checked row holds a -inf entry (a masked vocabulary entry)."""
    x = check_float_tensor(name, x, where=where)
    # two plain reductions: torch.aminmax is several times slower on bf16 CPU tensors
    row_min, row_max = x.detach().amin(dim=-1), x.detach().amax(dim=-1)  # [...], [...]
    if keep is not None:
        row_min, row_max = row_min[keep], row_max[keep]
    bad = torch.isnan(row_max) | (row_max == math.inf)
    if bool(bad.any()):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be finite (-inf marks a masked entry; no NaN or +inf). "
            f"Got {int(bad.sum())} position(s) holding NaN or +inf in a tensor of shape {tuple(x.shape)}."
        )
    if bool((row_max == -math.inf).any()):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} has a position whose entries are all -inf: "
            f"every distribution needs at least one finite logit."
        )
    return bool((row_min == -math.inf).any())


# --- added for analyses (analyses-core) ---------------------------------------------------------


def check_array(
    name: str, x: Any, *, where: str, min_dim: int = 1, dims: int | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A non-empty array of finite numbers (torch tensor, numpy array or nested list) -> a tensor.

    Analyses take numpy arrays as well as tensors; the result keeps a tensor's device and is cast to
    ``dtype`` (float64 by default, so reductions over many samples stay exact enough to test).
    """
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidParameterError(
                f"The '{name}' argument of {where} must be a torch tensor or a numpy array. "
                f"Got {type(x).__name__} instead."
            ) from None
    if x.dtype == torch.bool or x.is_complex():
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must hold real numbers. Got dtype {x.dtype} instead."
        )
    _check_shape(name, x, where=where, min_dim=min_dim, dims=dims)
    x = x.detach().to(dtype)
    if not bool(torch.isfinite(x).all()):
        n = int((~torch.isfinite(x)).sum())
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be finite. Got {n} NaN or inf value(s) "
            f"in an array of shape {tuple(x.shape)}."
        )
    return x


def as_tensor(name: str, x: Any, *, where: str) -> Tensor:
    """A torch tensor or numpy array -> a detached tensor of the same dtype (analyses take either)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be a torch.Tensor or numpy array. Got {type(x).__name__} instead."
        )
    return x.detach()
