"""Teacher-free KD (methods/13 §13.4c; Yuan, Tay, Li, Wang, Feng CVPR 2020, arXiv 1909.11723).

Tf-KD_reg distils from a hand-made virtual teacher built from the labels; Tf-KD_self from a trained
copy of the student. Both follow the authors' code: the KD term is batchmean × m/C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _kl, _tempered_kl, _upcast
from kdcore.validation import (
    InvalidParameterError,
    check_int_range,
    check_labels,
    check_logits,
    check_positive,
    check_range,
)

SOFTEN = ("probs", "log_probs")


def virtual_teacher(
    labels: Tensor, num_classes: int, a: float = 0.99, temperature: float = 20.0, soften: str = "probs"
) -> Tensor:
    """Tf-KD's virtual teacher p^d_T, [N, C] float32: p^d_c = a on the label, (1 − a)/(C − 1) elsewhere, then
    softened. `soften="probs"` (the authors' code): softmax(p^d / T), a softmax of *probabilities*, nearly
    uniform at large T; "log_probs": softmax(log p^d / T) (T = 1 returns p^d). methods/13 §13.4c."""
    where = "virtual_teacher"
    C = check_int_range("num_classes", num_classes, 2, 2**31 - 1, where=where)
    y = check_labels(
        labels, labels.shape[0] if isinstance(labels, Tensor) and labels.dim() == 1 else -1, C, where=where
    )
    return _virtual_teacher(y, C, a, temperature, soften, where)


def _virtual_teacher(
    y: Tensor, C: int, a: float, temperature: float, soften: str, where: str, dtype: torch.dtype = torch.float32
) -> Tensor:
    a = check_range("a", a, 0.0, 1.0, where=where, lo_open=True)
    T = check_positive("temperature", temperature, where=where)
    if soften not in SOFTEN:
        raise InvalidParameterError(
            f"The 'soften' parameter of {where} must be one of {', '.join(SOFTEN)}. Got {soften!r} instead."
        )
    p = torch.full((y.shape[0], C), (1.0 - a) / (C - 1), dtype=dtype, device=y.device)
    p[torch.arange(y.shape[0], device=y.device), y] = a  # [N, C]
    x = p if soften == "probs" else torch.log(p)  # log 0 = -inf: mass stays 0
    return torch.softmax(x / T, dim=-1)


def tfkd_reg_components(
    student_logits: Tensor, labels: Tensor, a: float = 0.99, temperature: float = 20.0, soften: str = "probs"
) -> dict[str, Tensor]:
    """Per-sample parts of Tf-KD_reg: ``{"ce": [B], "kl": [B]}``, kl = KL(p^d_T ‖ softmax(z_s)) (student at
    T = 1, no T²). methods/13 §13.4c."""
    return _tfkd_reg_components(student_logits, labels, a, temperature, soften, where="tfkd_reg_components")


def _tfkd_reg_components(
    student_logits: Tensor, labels: Tensor, a: float, temperature: float, soften: str, *, where: str
) -> dict[str, Tensor]:
    s = check_logits("student_logits", student_logits, where=where, dims=2, allow_neg_inf=False)
    if s.shape[1] < 2:
        raise InvalidParameterError(
            f"{where} needs at least 2 classes (the virtual teacher spreads 1 − a over the others). Got {s.shape[1]}."
        )
    y = _check_class_labels(labels, s, where=where)
    (s,) = _upcast(s)
    p = _virtual_teacher(y, s.shape[1], a, temperature, soften, where, s.dtype)  # [B, C]
    return {"ce": F.cross_entropy(s, y, reduction="none"), "kl": _kl(torch.log(p), torch.log_softmax(s, dim=-1))}


def tfkd_reg_loss(
    student_logits: Tensor,
    labels: Tensor,
    a: float = 0.99,
    temperature: float = 20.0,
    alpha: float = 0.1,
    multiplier: float | None = None,
    soften: str = "probs",
) -> Tensor:
    """Tf-KD_reg: batch mean of (1 − α)·CE(y, softmax(z_s)) + α·(m/C)·KL(p^d_T ‖ softmax(z_s)), m = `multiplier`
    (None: m = C). ResNet-18/CIFAR-100 settings: a = 0.99, T = 20, α = 0.1, m = 100. methods/13 §13.4c."""
    where = "tfkd_reg_loss"
    alpha = check_range("alpha", alpha, 0.0, 1.0, where=where)
    parts = _tfkd_reg_components(student_logits, labels, a, temperature, soften, where=where)
    C = student_logits.shape[1]
    m = float(C) if multiplier is None else check_positive("multiplier", multiplier, where=where)
    return ((1.0 - alpha) * parts["ce"] + alpha * (m / C) * parts["kl"]).mean()


def tfkd_self_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float = 6.0,
    alpha: float = 0.95,
    multiplier: float | None = None,
) -> Tensor:
    """Tf-KD_self (a trained copy of the student teaches): batch mean of
    (1 − α)·CE + α·(m/C)·T²·KL(softmax_T(z_t) ‖ softmax_T(z_s)); None: m = C (§1 KD with λ = α).
    The authors' ResNet-18/CIFAR-100: α = 0.95, T = 6, m = 50. methods/13 §13.4c."""
    where = "tfkd_self_loss"
    alpha = check_range("alpha", alpha, 0.0, 1.0, where=where)
    T = check_positive("temperature", temperature, where=where)
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    y = _check_class_labels(labels, s, where=where)
    C = s.shape[1]
    m = float(C) if multiplier is None else check_positive("multiplier", multiplier, where=where)
    s, t = _upcast(s, t)
    kl = _tempered_kl(s, t, T)  # [B]
    return ((1.0 - alpha) * F.cross_entropy(s, y, reduction="none") + alpha * (m / C) * T * T * kl).mean()
