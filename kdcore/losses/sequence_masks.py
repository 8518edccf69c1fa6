"""Shifted completion masks and reductions for sequence losses (methods/15 §15.0).

HF labels: input ids with -100 on prompt and padding. Losses use ``logits[:, :-1]`` against
``labels[:, 1:]``: shifted position j predicts token j + 1, so a row keeps j = P − 1 … P + C − 2.

    s, t, y, keep = shifted(student_logits, teacher_logits, labels, where=...)   # [B, L−1, V] ×2, [B, L−1] ×2
    y, keep = shifted_labels(labels, where=...)                                    # [B, L−1] ×2
    reduce_positions(values, keep, "token" | "sequence")                          # scalar
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.validation import InvalidParameterError, check_same_shape

REDUCTIONS = ("token", "sequence")
IGNORE_INDEX = -100  # = kdcore.methods.step.IGNORE_INDEX


def shifted(
    student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor, *, where: str
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """(student [B, L−1, V], teacher [B, L−1, V] or None, targets [B, L−1] (−100 → 0), keep [B, L−1] bool)."""
    if not isinstance(student_logits, Tensor) or student_logits.dim() != 3 or not student_logits.is_floating_point():
        raise InvalidParameterError(
            f"student_logits of {where} must be a float tensor [batch, length, vocabulary]. Got "
            f"{getattr(student_logits, 'shape', type(student_logits).__name__)} instead."
        )
    if teacher_logits is not None:
        check_same_shape(student_logits, teacher_logits, where=where, cross_vocab_hint=True)
    if not isinstance(labels, Tensor) or tuple(labels.shape) != tuple(student_logits.shape[:2]):
        raise InvalidParameterError(
            f"labels of {where} must be an integer tensor shaped like logits[..., 0], "
            f"{tuple(student_logits.shape[:2])}. Got {getattr(labels, 'shape', type(labels).__name__)} instead."
        )
    y, keep = shifted_labels(labels, where=where)
    v = student_logits.shape[-1]
    if bool(((y[keep] < 0) | (y[keep] >= v)).any()):
        raise InvalidParameterError(f"labels of {where} must be token ids in [0, {v}) or -100; got ids outside.")
    targets = torch.where(keep, y, torch.zeros_like(y))
    t = None if teacher_logits is None else teacher_logits[:, :-1]
    return student_logits[:, :-1], t, targets, keep


def shifted_labels(labels: Tensor, *, where: str, name: str = "labels") -> tuple[Tensor, Tensor]:
    """(labels[:, 1:] [B, L−1], keep [B, L−1] bool: the label is not −100); refuses a batch keeping none."""
    y = labels[:, 1:]
    keep = y != IGNORE_INDEX
    if not bool(keep.any()):
        raise InvalidParameterError(
            f"{name} of {where} keep no position: every completion label is -100, and a batch with no kept "
            "position has nothing to average. Each batch needs at least one completion token (labels are the "
            "input ids with -100 on prompt and padding)."
        )
    return y, keep


def check_reduction(reduction: str, where: str) -> None:
    if reduction not in REDUCTIONS:
        raise InvalidParameterError(
            f"The 'reduction' parameter of {where} must be one of {REDUCTIONS}. Got {reduction!r} instead."
        )


def reduce_positions(values: Tensor, keep: Tensor, reduction: str) -> Tensor:
    """ "token": sum over kept positions / their number; "sequence": per-row mean over kept positions,
    then the mean over rows that keep any. `values` [B, L'] (anything at masked positions), keep [B, L']."""
    v = torch.where(keep, values, torch.zeros_like(values))
    if reduction == "token":
        return v.sum() / keep.sum()
    counts = keep.sum(dim=1)  # [B]
    rows = counts > 0
    return (v.sum(dim=1)[rows] / counts[rows]).mean()


def kept_values(per_position: Tensor, keep: Tensor) -> Tensor:
    """[K] values at the kept positions scattered back into a [B, L'] tensor (zeros elsewhere)."""
    out = torch.zeros(keep.shape, dtype=per_position.dtype, device=per_position.device)
    return out.masked_scatter(keep, per_position)
