"""Validation of the logits every classification loss takes (private)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from kdcore.validation import check_labels, check_logits, check_same_shape


def _check_pair(
    student_logits: Any, teacher_logits: Any, *, where: str, allow_neg_inf: bool = True
) -> tuple[Tensor, Tensor]:
    """Student and teacher logits: [B, C] float, finite (-inf allowed where stated), same shape."""
    s = check_logits("student_logits", student_logits, where=where, dims=2, allow_neg_inf=allow_neg_inf)
    t = check_logits("teacher_logits", teacher_logits, where=where, dims=2, allow_neg_inf=allow_neg_inf)
    check_same_shape(s, t, where=where)
    return s, t


def _check_class_labels(labels: Any, logits: Tensor, *, where: str) -> Tensor:
    """Integer labels [B] in [0, C) for [B, C] logits -> long tensor on the logits' device."""
    return check_labels(labels, logits.shape[0], logits.shape[1], where=where).to(logits.device)
