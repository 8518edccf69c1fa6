"""Classic KD, NormKD and label smoothing (METHODS.md §1, §5, §12).

Every function computes in float32 or wider whatever the input dtype; a logit of -inf is a class
with probability exactly 0 and adds 0 to a divergence.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _kl, _tempered_kl, _upcast
from kdcore.validation import check_int_range, check_labels, check_logits, check_positive, check_range, format_rows

_STD_EPS = 1e-7  # logit standardisation's denominator guard (Sun et al. 2024), as the authors' code


def softmax_t(logits: Tensor, temperature: float) -> Tensor:
    """softmax(z / T) over the last dimension, computed (and returned) in float32 or wider.

    Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531.
    """
    where = "softmax_t"
    z = check_logits("logits", logits, where=where, min_dim=1)
    t = check_positive("temperature", temperature, where=where)
    (z,) = _upcast(z)
    return torch.softmax(z / t, dim=-1)


def _standardize(z: Tensor) -> Tensor:
    """(z − mean(z)) / (std(z) + 1e-7) per row, std with Bessel's correction: [B, C] -> [B, C]."""
    mean = z.mean(dim=-1, keepdim=True)
    std = z.std(dim=-1, keepdim=True)  # unbiased, as torch.std and the authors' code
    return (z - mean) / (std + _STD_EPS)


def kd_components(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    standardize: bool = False,
) -> dict[str, Tensor]:
    """Per-sample parts of classic KD: ``{"ce": [B], "kl": [B]}`` ("ce" only when labels are given).

    - ce: cross-entropy of the student at T = 1 (raw logits, also with ``standardize=True``);
    - kl: KL(softmax_T(z_t) ‖ softmax_T(z_s)), *without* the T² factor.

    ``standardize=True`` replaces each logit vector by (z − mean)/(std + 1e-7) before the
    temperature (logit standardisation, Sun et al. CVPR 2024, arXiv 2403.01427); std uses Bessel's
    correction. Hinton et al. 2015, arXiv 1503.02531; METHODS.md §1.
    """
    where = "kd_components"
    return _kd_components(
        student_logits, teacher_logits, labels, temperature=temperature, standardize=standardize, where=where
    )


def _kd_components(
    student_logits: Any, teacher_logits: Any, labels: Any, *, temperature: Any, standardize: Any, where: str
) -> dict[str, Tensor]:
    if not isinstance(standardize, bool):
        raise ValueError(f"The 'standardize' parameter of {where} must be True or False. Got {standardize!r} instead.")
    s, t = _check_pair(student_logits, teacher_logits, where=where, allow_neg_inf=not standardize)
    if standardize and s.shape[-1] < 2:
        raise ValueError(
            f"standardize=True in {where} needs at least 2 classes (the standard deviation of one "
            f"logit is undefined). Got {s.shape[-1]} class."
        )
    T = check_positive("temperature", temperature, where=where)
    y = None if labels is None else _check_class_labels(labels, s, where=where)
    s, t = _upcast(s, t)  # [B, C] float32+
    zs, zt = (_standardize(s), _standardize(t)) if standardize else (s, t)
    out = {}
    if y is not None:
        out["ce"] = F.cross_entropy(s, y, reduction="none")  # [B], T = 1
    out["kl"] = _tempered_kl(zs, zt, T)  # [B]
    return out


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    lam: float = 0.9,
    standardize: bool = False,
) -> Tensor:
    """Classic KD: mean over the batch of (1 − λ)·CE(y, softmax(z_s)) + λ·T²·KL(p_T ‖ q_T).

    Without labels: T²·mean(KL) (λ is not applied). λ ∈ [0, 1]. Same as mdistiller's KD and
    torchdistill's KDLoss with α = 1 − λ. Hinton et al. 2015, arXiv 1503.02531; METHODS.md §1.
    """
    where = "kd_loss"
    lam = check_range("lam", lam, 0.0, 1.0, where=where)
    parts = _kd_components(
        student_logits, teacher_logits, labels, temperature=temperature, standardize=standardize, where=where
    )
    T = float(temperature)
    if "ce" not in parts:
        return T * T * parts["kl"].mean()
    return ((1.0 - lam) * parts["ce"] + lam * T * T * parts["kl"]).mean()


def normkd_components(student_logits: Tensor, teacher_logits: Tensor, *, t_norm: float = 2.0) -> dict[str, Tensor]:
    """Per-sample parts of NormKD: ``{"t_teacher", "t_student", "kl", "loss"}``, each [B].

    T_t = T_norm·std(z_t), T_s = T_norm·std(z_s) (Bessel's correction, as torch.std);
    kl = KL(softmax(z_t/T_t) ‖ softmax(z_s/T_s)); loss = kl·T_t². Logit vectors with zero spread
    (all equal) have no temperature and are rejected. Chi et al. 2023, "NormKD: Normalized Logits
    for Knowledge Distillation", arXiv 2308.00520; METHODS.md §5.
    """
    return _normkd_components(student_logits, teacher_logits, t_norm=t_norm, where="normkd_components")


def _normkd_components(student_logits: Any, teacher_logits: Any, *, t_norm: Any, where: str) -> dict[str, Tensor]:
    s, t = _check_pair(student_logits, teacher_logits, where=where, allow_neg_inf=False)
    t_norm = check_positive("t_norm", t_norm, where=where)
    if s.shape[-1] < 2:
        raise ValueError(
            f"{where} needs at least 2 classes (its temperatures come from the standard deviation of "
            f"each logit vector). Got {s.shape[-1]} class."
        )
    s, t = _upcast(s, t)  # [B, C]
    std_t = t.std(dim=-1)  # [B]
    std_s = s.std(dim=-1)
    for name, std in (("teacher_logits", std_t), ("student_logits", std_s)):
        flat = (std == 0).nonzero().flatten()
        if flat.numel():
            raise ValueError(
                f"The '{name}' argument of {where} has rows {format_rows(flat)} whose logits are all "
                f"equal: NormKD's per-sample temperature T_norm·std(z) would be 0. Drop those rows or "
                f"use kd_loss."
            )
    temp_t = t_norm * std_t  # [B]
    temp_s = t_norm * std_s
    kl = _kl(torch.log_softmax(t / temp_t[:, None], dim=-1), torch.log_softmax(s / temp_s[:, None], dim=-1))
    return {"t_teacher": temp_t, "t_student": temp_s, "kl": kl, "loss": kl * temp_t**2}


def normkd_loss(student_logits: Tensor, teacher_logits: Tensor, *, t_norm: float = 2.0) -> Tensor:
    """NormKD: batch mean of KL(softmax(z_t/T_t) ‖ softmax(z_s/T_s))·T_t², T_x = T_norm·std(z_x).

    T_norm = 2.0 is the authors' CIFAR-100 setting (1.0 on ImageNet). Chi et al. 2023,
    arXiv 2308.00520; METHODS.md §5.
    """
    return _normkd_components(student_logits, teacher_logits, t_norm=t_norm, where="normkd_loss")["loss"].mean()


def label_smoothing_targets(labels: Tensor, num_classes: int, *, eps: float) -> Tensor:
    """Label-smoothed targets [B, C] (float32): 1 − ε + ε/C on the label, ε/C elsewhere.

    The "teacher" of label smoothing seen as KD at T = 1 (METHODS.md §12; Szegedy et al. 2016,
    arXiv 1512.00567; Yuan et al. 2020, arXiv 1909.11723).
    """
    where = "label_smoothing_targets"
    C = check_int_range("num_classes", num_classes, 1, 2**31 - 1, where=where)
    eps = check_range("eps", eps, 0.0, 1.0, where=where)
    if isinstance(labels, Tensor) and labels.dim() != 1:
        raise ValueError(
            f"The 'labels' argument of {where} must have shape [B] (one class index per sample). "
            f"Got shape {tuple(labels.shape)} instead."
        )
    if isinstance(labels, Tensor) and labels.numel() == 0:
        raise ValueError(
            f"The 'labels' argument of {where} is empty (shape {tuple(labels.shape)}): pass at least one sample."
        )
    y = check_labels(labels, labels.shape[0] if isinstance(labels, Tensor) else -1, C, where=where)
    return _smoothed_targets(y, C, eps, torch.float32)


def _smoothed_targets(y: Tensor, num_classes: int, eps: float, dtype: torch.dtype) -> Tensor:
    """(1 − ε)·one_hot(y) + ε/C in ``dtype``: [B] -> [B, C]."""
    targets = torch.full((y.shape[0], num_classes), eps / num_classes, dtype=dtype, device=y.device)
    targets[torch.arange(y.shape[0], device=y.device), y] += 1.0 - eps
    return targets


def label_smoothing_loss(student_logits: Tensor, labels: Tensor, *, eps: float) -> Tensor:
    """Cross-entropy against ``label_smoothing_targets``, batch mean.

    Equals, up to the constant entropy of the targets, KD at T = 1 with λ = 1 from the label-smoothing
    teacher (same gradients). METHODS.md §12; Szegedy et al. 2016, arXiv 1512.00567.
    """
    where = "label_smoothing_loss"
    s = check_logits("student_logits", student_logits, where=where, dims=2)
    y = _check_class_labels(labels, s, where=where)
    eps = check_range("eps", eps, 0.0, 1.0, where=where)
    (s,) = _upcast(s)
    targets = _smoothed_targets(y, s.shape[-1], eps, s.dtype)  # [B, C]
    log_q = torch.log_softmax(s, dim=-1)  # [B, C]
    # −Σ y_i log q_i with 0·log 0 = 0: entries with y_i = 0 are masked before the product.
    has = targets > 0
    ce = -torch.where(has, targets * torch.where(has, log_q, torch.zeros_like(log_q)), torch.zeros_like(log_q)).sum(-1)
    return ce.mean()
