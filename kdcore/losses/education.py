"""Education distillation (methods/13 §13.5; Feng et al. 2023, arXiv 2311.13811): classes split into
grades, one teacher per grade, a student that grows a grade at a time. Here: the grades, the grade of
an epoch and the per-batch loss; the growing student is the runner's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._kl import _tempered_kl, _upcast
from kdcore.validation import (
    InvalidParameterError,
    check_int_range,
    check_labels,
    check_logits,
    check_positive,
    check_range,
    check_same_batch,
)


def grade_partition(num_classes: int, ratios: Sequence[float] = (1, 1, 1)) -> list[tuple[int, int]]:
    """Contiguous class ranges [(m_g, n_g), …], one per grade, in the dataset's class order: sizes
    ⌊C·r_g/Σr⌋, the last grade takes the rest (100 classes in 1:1:1 -> 33/33/34). methods/13 §13.5."""
    where = "grade_partition"
    C = check_int_range("num_classes", num_classes, 1, 2**31 - 1, where=where)
    r = _check_ratios(ratios, where)
    sizes = [math.floor(C * x / sum(r)) for x in r[:-1]]
    sizes.append(C - sum(sizes))
    empty = [g + 1 for g, n in enumerate(sizes) if n < 1]
    if empty:
        raise InvalidParameterError(
            f"grade_partition({C}, ratios={list(ratios)!r}) leaves grade(s) {empty} without a "
            f"class (sizes {sizes}). Use fewer grades or more even ratios."
        )
    bounds = [0, *[sum(sizes[: g + 1]) for g in range(len(sizes))]]
    return [(bounds[g], bounds[g + 1]) for g in range(len(sizes))]


def _check_ratios(ratios: Any, where: str) -> list[float]:
    ok = (
        isinstance(ratios, (list, tuple))
        and len(ratios) >= 1
        and all(
            isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) and float(x) > 0
            for x in ratios
        )
    )
    if not ok:
        raise InvalidParameterError(
            f"The 'ratios' parameter of {where} must be a non-empty list of positive numbers, "
            f"one per grade (e.g. (1, 1, 1)). Got {ratios!r} instead."
        )
    return [float(x) for x in ratios]


def grade_of_epoch(epoch: int, boundaries: Sequence[int] = (150, 180)) -> int:
    """g(e) = 1 + #{b ∈ boundaries : e ≥ b}, epoch e ≥ 1: the student's grade. methods/13 §13.5."""
    where = "grade_of_epoch"
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 1:
        raise InvalidParameterError(
            f"The 'epoch' parameter of {where} must be an integer >= 1 (epochs count from 1). Got {epoch!r} instead."
        )
    b = list(boundaries) if isinstance(boundaries, (list, tuple)) else None
    if (
        b is None
        or any(isinstance(x, bool) or not isinstance(x, numbers.Integral) for x in b)
        or any(x >= y for x, y in zip(b, b[1:]))
    ):
        raise InvalidParameterError(
            f"The 'boundaries' parameter of {where} must be a strictly increasing list of "
            f"integer epochs. Got {boundaries!r} instead."
        )
    return 1 + sum(int(epoch) >= x for x in b)


def education_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    grade_slice: tuple[int, int],
    temperature: float = 4.0,
    ce_weight: float = 0.3,
) -> Tensor:
    """Education distillation, a batch of grade h = [m, n): batch mean of
    w_ce·CE(y, softmax(z_s)) + (1 − w_ce)·T²·KL(softmax_T(z_{t_h}) ‖ softmax_T(z_s[:, m:n])).

    CE over all classes of the student's current head, with global labels (all inside [m, n)); the
    KD term over the grade's slice only; the teacher predicts the n − m classes of its grade.
    Defaults w_ce = 0.3, T = 4. methods/13 §13.5.
    """
    where = "education_kd_loss"
    T = check_positive("temperature", temperature, where=where)
    w = check_range("ce_weight", ce_weight, 0.0, 1.0, where=where)
    s = check_logits("student_logits", student_logits, where=where, dims=2)
    t = check_logits("teacher_logits", teacher_logits, where=where, dims=2)
    check_same_batch(s, t, where=where, student_name="student_logits", teacher_name="teacher_logits")
    m, n = _check_slice(grade_slice, s.shape[1], t, where)
    y = check_labels(labels, s.shape[0], s.shape[1], where=where).to(s.device)
    outside = (y < m) | (y >= n)
    if bool(outside.any()):
        raise InvalidParameterError(
            f"The 'labels' argument of {where} must lie in the grade's classes [{m}, {n}). Got "
            f"{int(outside.sum())} label(s) outside, e.g. {int(y[outside][0])}. Pass the batches "
            f"of one grade with that grade's slice."
        )
    s, t = _upcast(s, t)
    kl = _tempered_kl(s[:, m:n], t, T)  # [B]
    return (w * F.cross_entropy(s, y, reduction="none") + (1.0 - w) * T * T * kl).mean()


def _check_slice(grade_slice: Any, n_student: int, t: Tensor, where: str) -> tuple[int, int]:
    ok = (
        isinstance(grade_slice, (tuple, list))
        and len(grade_slice) == 2
        and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in grade_slice)
    )
    if not ok or not 0 <= grade_slice[0] < grade_slice[1] <= n_student:
        raise InvalidParameterError(
            f"The 'grade_slice' argument of {where} must be (m, n) with 0 <= m < n <= {n_student} "
            f"(inside the student's head of {n_student} classes). Got {grade_slice!r} instead."
        )
    m, n = int(grade_slice[0]), int(grade_slice[1])
    if t.shape[1] != n - m:
        raise InvalidParameterError(
            f"The teacher of {where} must predict the grade's {n - m} classes [{m}, {n}). Got "
            f"teacher_logits of width {t.shape[1]}. Use the teacher trained on this grade."
        )
    return m, n
