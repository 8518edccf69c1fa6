"""Per-label binary KD for multi-label classifiers (`bkd`).

Hinton et al. 2015 (arXiv 1503.02531) soften a softmax over mutually exclusive classes. The labels of
a multi-label task are not exclusive: each is its own Bernoulli with a sigmoid output, and a softmax
across them would make the labels compete for one unit of probability mass. So the soft-target
recipe (temperature, T² gradient scale, λ mixture with the hard loss) is applied per label to the
two-outcome distributions b(z) = (σ(z/T), 1 − σ(z/T)):

    kl_i   = (1/C)·Σ_c KL(b(z_t[i, c]) ‖ b(z_s[i, c]))                                  [B]
    bce_i  = (1/C)·Σ_c BCE(y[i, c], σ(z_s[i, c]))   (T = 1)                             [B]
    loss   = mean_i (1 − λ)·bce_i + λ·T²·kl_i        (without labels: T²·mean_i kl_i)

KL(b(z_t) ‖ b(z_s)) is computed as the cross-entropy BCE(σ(z_t/T), σ(z_s/T)) (from the logits, stable)
minus its minimum, the entropy BCE(σ(z_t/T), σ(z_t/T)). `binary_kd_loss` takes each mean over all B·C
entries with the same operations as the sample pairs' training script always did, so the committed
multi-label student retrains bit for bit. Arithmetic is float32 or wider whatever the input dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_pair
from kdcore.losses._kl import _upcast
from kdcore.validation import InvalidParameterError, check_positive, check_range


def _soft_terms(zs: Tensor, zt: Tensor, T: float, reduction: str) -> tuple[Tensor, Tensor]:
    """(cross-entropy to the teacher's σ(z_t/T), its minimum the teacher's entropy): KL = first − second."""
    p = torch.sigmoid(zt / T)  # [B, C]
    soft = F.binary_cross_entropy_with_logits(zs / T, p, reduction=reduction)
    entropy = F.binary_cross_entropy(p, p, reduction=reduction)
    return soft, entropy


def binary_kd_components(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None, *, temperature: float = 4.0
) -> dict[str, Tensor]:
    """Per-sample parts of per-label binary KD: ``{"bce": [B], "kl": [B]}`` ("bce" only with labels).

    student_logits, teacher_logits: [B, C] (one logit per label); labels: [B, C] 0/1 (bool, int or float).
    kl is the mean over labels of KL(b_T(z_t) ‖ b_T(z_s)) *without* the T² factor; bce is at T = 1.
    """
    return _components(student_logits, teacher_logits, labels, temperature=temperature, where="binary_kd_components")


def _components(student_logits: Any, teacher_logits: Any, labels: Any, *, temperature: Any, where: str) -> dict:
    s, t = _check_pair(student_logits, teacher_logits, where=where, allow_neg_inf=False)
    T = check_positive("temperature", temperature, where=where)
    s, t = _upcast(s, t)  # [B, C] float32+
    soft, entropy = _soft_terms(s, t, T, "none")  # [B, C] each
    out = {"kl": (soft - entropy).mean(dim=-1)}  # [B]
    if labels is not None:
        y = _check_labels(labels, s, where=where)
        out["bce"] = F.binary_cross_entropy_with_logits(s, y, reduction="none").mean(dim=-1)  # [B]
    return out


def _check_labels(labels: Any, logits: Tensor, *, where: str) -> Tensor:
    """[B, C] 0/1 labels (bool, int or float; a row may have no positive label) -> floats like the logits."""
    shape = tuple(logits.shape)
    if not isinstance(labels, Tensor) or tuple(labels.shape) != shape:
        got = f"shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise InvalidParameterError(
            f"The 'labels' argument of {where} must be a tensor of 0/1 labels of shape {list(shape)} "
            f"(one column per label, as the logits). Got {got} instead. For one class id per sample use kd_loss."
        )
    if labels.dtype != torch.bool and not bool(((labels == 0) | (labels == 1)).all()):
        bad = labels[(labels != 0) & (labels != 1)].flatten()[:3].tolist()
        raise InvalidParameterError(
            f"The 'labels' argument of {where} must hold only 0/1 (or bool) values. Got values such as {bad}."
        )
    return labels.to(device=logits.device, dtype=logits.dtype)


def binary_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    lam: float = 0.9,
) -> Tensor:
    """Per-label binary KD: mean over the batch of (1 − λ)·BCE(y, σ(z_s)) + λ·T²·KL(b_T(z_t) ‖ b_T(z_s)),
    each averaged over the labels. Without labels: T²·mean(kl) (λ is not applied). λ ∈ [0, 1]."""
    where = "binary_kd_loss"
    lam = check_range("lam", lam, 0.0, 1.0, where=where)
    s, t = _check_pair(student_logits, teacher_logits, where=where, allow_neg_inf=False)
    T = check_positive("temperature", temperature, where=where)
    s, t = _upcast(s, t)  # [B, C] float32+
    soft, entropy = _soft_terms(s, t, T, "mean")  # means over all B·C entries
    if labels is None:
        return temperature**2 * (soft - entropy)
    hard = F.binary_cross_entropy_with_logits(s, _check_labels(labels, s, where=where))
    return (1 - lam) * hard + lam * temperature**2 * (soft - entropy)
