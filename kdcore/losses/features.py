"""Feature distillation: FitNets' L2 hint loss, its cosine variant, and the width projector.

METHODS.md §7. Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", arXiv 1412.6550 (eq. 5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from kdcore.losses._kl import _upcast
from kdcore.validation import check_finite_tensor, check_same_batch

_COS_EPS = 1e-8  # floor on ‖a‖·‖b‖ so that a zero feature vector gives cos = 0, not NaN


def make_projector(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """The learned map g from student to teacher features, for feature shapes *with* the batch dim.

    - [B, D] features: ``nn.Linear(D_s, D_t, bias=False)``;
    - [B, L, D] token features: the same Linear over the last dimension;
    - [B, C, H, W] feature maps: a 1×1 ``nn.Conv2d(C_s, C_t, bias=False)`` (H and W must agree);
    - ``nn.Identity()`` when the widths already match.
    Train it with the student (add its parameters to the optimiser). Romero et al. 2015,
    arXiv 1412.6550; METHODS.md §7.
    """
    where = "make_projector"
    s, t = _check_shape("student_shape", student_shape, where), _check_shape("teacher_shape", teacher_shape, where)
    if len(s) != len(t):
        raise ValueError(
            f"student_shape and teacher_shape of {where} must have the same number of dimensions. "
            f"Got {s} for the student and {t} for the teacher."
        )
    if len(s) == 4 and s[2:] != t[2:]:
        raise ValueError(
            f"The spatial sizes (H, W) of {where} differ: the student has {s[2:]}, the teacher has "
            f"{t[2:]}. A 1×1 projector maps channels only: pick layers of the same resolution or "
            f"pool/resize the student's map first."
        )
    if len(s) == 3 and s[1] != t[1]:
        raise ValueError(f"The sequence lengths of {where} differ: the student has {s[1]}, the teacher has {t[1]}.")
    width_s, width_t = (s[1], t[1]) if len(s) == 4 else (s[-1], t[-1])  # channels or feature width
    if width_s == width_t:
        return nn.Identity()
    if len(s) == 4:
        return nn.Conv2d(width_s, width_t, kernel_size=1, bias=False)
    return nn.Linear(width_s, width_t, bias=False)


def _check_shape(name: str, shape: Any, where: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        dims = None
    if dims is None or len(dims) not in (2, 3, 4) or any(d < 1 for d in dims):
        raise ValueError(
            f"The '{name}' parameter of {where} must be a feature shape with the batch dimension: "
            f"[B, D], [B, L, D] or [B, C, H, W] with positive sizes (e.g. tensor.shape). Got {shape!r} instead."
        )
    return dims


def _projected_pair(
    student_features: Any, teacher_features: Any, projector: Callable[[Tensor], Tensor] | None, where: str
) -> tuple[Tensor, Tensor]:
    """Validated (g(f_s), f_t) in one compute dtype, same shape: [B, ...] each."""
    fs = check_finite_tensor("student_features", student_features, where=where, min_dim=2)
    ft = check_finite_tensor("teacher_features", teacher_features, where=where, min_dim=2)
    check_same_batch(fs, ft, where=where, student_name="student_features", teacher_name="teacher_features")
    if projector is not None:
        if not callable(projector):
            raise ValueError(
                f"The 'projector' argument of {where} must be a module or function (e.g. from "
                f"make_projector) or None. Got {type(projector).__name__} instead."
            )
        fs = projector(fs)
    if fs.shape != ft.shape:
        after = " after the projector" if projector is not None else ""
        raise ValueError(
            f"student_features{after} and teacher_features of {where} must have the same shape. Got "
            f"{tuple(fs.shape)} for the student and {tuple(ft.shape)} for the teacher. Pass "
            f"projector=make_projector(student.shape, teacher.shape) and train it with the student."
        )
    fs, ft = _upcast(fs, ft)
    return fs, ft


def feature_l2_loss(
    student_features: Tensor, teacher_features: Tensor, projector: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """FitNets hint loss: (1/N)·Σ_i ‖f_t^(i) − g(f_s^(i))‖², squared L2 over every feature dimension.

    g is ``projector`` (see ``make_projector``) or the identity. Romero et al. 2015,
    arXiv 1412.6550, eq. 5; METHODS.md §7.
    """
    gs, ft = _projected_pair(student_features, teacher_features, projector, "feature_l2_loss")
    return (ft - gs).pow(2).flatten(1).sum(dim=1).mean()


def feature_cosine_loss(
    student_features: Tensor, teacher_features: Tensor, projector: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Batch mean of 1 − cos(f_t, g(f_s)), each sample's features flattened to one vector.

    A zero vector has cosine 0 with anything (‖a‖·‖b‖ is floored at 1e-8). METHODS.md §7.
    """
    gs, ft = _projected_pair(student_features, teacher_features, projector, "feature_cosine_loss")
    a, b = gs.flatten(1), ft.flatten(1)  # [B, D]
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(_COS_EPS)
    return (1.0 - cos).mean()
