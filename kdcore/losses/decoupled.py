"""Decoupled KD (DKD) and correlation-aware KD (CAKD): KL split over a class partition.

METHODS.md §3 and §4. For a per-sample split of the classes into a strong set S and a weak set
W = not S (DKD: S = {target}),

    KL(p ‖ q) = BCD + p_S·SCD + p_W·WCD        (DKD: KL = TCKD + (1 − p_t)·NCKD)

where BCD is the KL of the binary masses (p_S, p_W) and SCD / WCD the KL of the distributions
renormalised inside S / W. Everything is computed in log space: masses by a masked log-sum-exp
(p_W as the sum over W, never 1 − p_S), renormalised distributions by a log-softmax over the kept
classes with the others at -inf (never p_i / Σp, which underflows once a set's mass does).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _binary_kl, _kl, _masked_logsumexp, _set_kl, _upcast
from kdcore.validation import (
    check_int_range,
    check_logits,
    check_multi_hot,
    check_nonnegative,
    check_positive,
    check_range,
)

RULES = ("target", "topk", "mass", "labels")


def _split_components(student: Tensor, teacher: Tensor, strong: Tensor, temperature: float) -> dict[str, Tensor]:
    """BCD, SCD, WCD, p_S, p_W and KL per sample for validated [B, C] logits and a bool [B, C] split."""
    student, teacher = _upcast(student, teacher)
    zs, zt = student / temperature, teacher / temperature  # [B, C]
    log_p = torch.log_softmax(zt, dim=-1)  # teacher, [B, C]
    log_q = torch.log_softmax(zs, dim=-1)  # student
    weak = ~strong
    log_p_s, log_p_w = _masked_logsumexp(log_p, strong), _masked_logsumexp(log_p, weak)  # [B]
    log_q_s, log_q_w = _masked_logsumexp(log_q, strong), _masked_logsumexp(log_q, weak)
    return {
        "bcd": _binary_kl(log_p_s, log_p_w, log_q_s, log_q_w),
        "scd": _set_kl(zt, zs, strong),
        "wcd": _set_kl(zt, zs, weak),
        "p_strong": log_p_s.exp(),
        "p_weak": log_p_w.exp(),
        "kl": _kl(log_p, log_q),
    }


def _target_mask(labels: Tensor, num_classes: int) -> Tensor:
    """One-hot bool mask [B, C] of the target classes."""
    return torch.nn.functional.one_hot(labels, num_classes).bool()


# ---- DKD ----------------------------------------------------------------------------------------


def dkd_components(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, temperature: float = 1.0
) -> dict[str, Tensor]:
    """Per-sample DKD parts at temperature T (no T² factor): ``{"tckd", "nckd", "p_target", "kl"}``.

    TCKD = KL(b^T ‖ b^S) with b = (p_t, 1 − p_t); NCKD = KL(p̂^T ‖ p̂^S) over the non-target classes
    renormalised; KL = TCKD + (1 − p_t)·NCKD exactly. NCKD is 0 where the teacher puts no mass on
    the non-target classes. Zhao et al. CVPR 2022, "Decoupled Knowledge Distillation",
    arXiv 2203.08679; METHODS.md §3.
    """
    return _dkd_components(student_logits, teacher_logits, labels, temperature=temperature, where="dkd_components")


def _dkd_components(
    student_logits: Any, teacher_logits: Any, labels: Any, *, temperature: Any, where: str
) -> dict[str, Tensor]:
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    y = _check_class_labels(labels, s, where=where)
    T = check_positive("temperature", temperature, where=where)
    parts = _split_components(s, t, _target_mask(y, s.shape[-1]), T)
    return {"tckd": parts["bcd"], "nckd": parts["wcd"], "p_target": parts["p_strong"], "kl": parts["kl"]}


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
) -> Tensor:
    """DKD: T²·(α·TCKD + β·NCKD), batch mean (mdistiller's defaults α = 1, β = 8, T = 4).

    The CE term and the warm-up of mdistiller's trainer are the job's business, not this loss's.
    Zhao et al. CVPR 2022, arXiv 2203.08679; METHODS.md §3.
    """
    where = "dkd_loss"
    alpha = check_nonnegative("alpha", alpha, where=where)
    beta = check_nonnegative("beta", beta, where=where)
    parts = _dkd_components(student_logits, teacher_logits, labels, temperature=temperature, where=where)
    T = float(temperature)
    return T * T * (alpha * parts["tckd"] + beta * parts["nckd"]).mean()


# ---- CAKD ---------------------------------------------------------------------------------------


def strong_set(
    teacher_logits: Tensor,
    *,
    rule: str,
    labels: Tensor | None = None,
    k: int | None = None,
    tau: float | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """The strong-correlation classes S per sample, a bool mask [B, C] (no gradient).

    rule:
    - ``"target"``: S = {y}; needs integer ``labels`` [B];
    - ``"topk"``: the ``k`` classes the teacher ranks highest, ties to the lower index; k in [1, C];
    - ``"mass"``: the fewest top teacher classes whose cumulative probability at ``temperature``
      reaches ``tau`` (at least one); tau in (0, 1];
    - ``"labels"``: multi-label, S = the positive labels; needs multi-hot ``labels`` [B, C] with at
      least one positive per row.
    Arguments a rule does not use are ignored. Zhang et al. 2024, arXiv 2410.14741; METHODS.md §4.
    """
    where = "strong_set"
    t = check_logits("teacher_logits", teacher_logits, where=where, dims=2)
    T = check_positive("temperature", temperature, where=where)
    B, C = t.shape
    if rule not in RULES:
        raise ValueError(
            f"The 'rule' parameter of {where} must be one of {', '.join(map(repr, RULES))}. Got {rule!r} instead."
        )
    if rule in ("target", "labels"):
        return _label_strong_set(rule, labels, t, where=where)
    t = t.detach().to(torch.float64)
    order = torch.sort(t, dim=-1, descending=True, stable=True).indices  # [B, C], ties: lower index first
    rank = torch.arange(C, device=t.device).expand(B, C)  # [B, C] position in the ranking
    n_strong = _n_strong(rule, t, order, k=k, tau=tau, temperature=T, where=where)  # [B, 1]
    return torch.zeros(B, C, dtype=torch.bool, device=t.device).scatter(-1, order, rank < n_strong)


def _label_strong_set(rule: str, labels: Tensor | None, t: Tensor, *, where: str) -> Tensor:
    """S from the labels: rule "target" (integer labels [B]) or "labels" (multi-hot [B, C]); t [B, C]."""
    B, C = t.shape
    if rule == "target":
        if labels is None:
            raise ValueError(
                f"rule='target' in {where} needs 'labels': integer class indices of shape [{B}]. Got None."
            )
        return _target_mask(_check_class_labels(labels, t, where=where), C)
    if labels is None:
        raise ValueError(f"rule='labels' in {where} needs 'labels': a multi-hot tensor of shape [{B}, {C}]. Got None.")
    mask = check_multi_hot(
        "labels", labels, B, C, where=where, hint="For one class index per sample, use rule='target'."
    )
    return mask.to(t.device)


def _n_strong(
    rule: str, t: Tensor, order: Tensor, *, k: int | None, tau: float | None, temperature: float, where: str
) -> Tensor:
    """[B, 1] size of S per sample for rule "topk" or "mass"; t [B, C] float64 logits, order [B, C] their ranking."""
    B, C = t.shape
    if rule == "topk":
        if k is None:
            raise ValueError(f"rule='topk' in {where} needs 'k', an integer in [1, {C}]. Got None.")
        return torch.full((B, 1), check_int_range("k", k, 1, C, where=where), device=t.device)
    if tau is None:  # mass
        raise ValueError(f"rule='mass' in {where} needs 'tau', a float in (0, 1]. Got None.")
    tau = check_range("tau", tau, 0.0, 1.0, where=where, lo_open=True)
    p_sorted = torch.softmax(t / temperature, dim=-1).gather(-1, order)  # [B, C], descending
    below = (p_sorted.cumsum(dim=-1) < tau).sum(dim=-1, keepdim=True)  # [B, 1] prefixes short of tau
    return (below + 1).clamp(max=C)  # rounding may leave Σp < 1 = tau


def cakd_components(
    student_logits: Tensor, teacher_logits: Tensor, strong: Tensor, *, temperature: float = 1.0
) -> dict[str, Tensor]:
    """Per-sample CAKD parts at temperature T (no T² factor).

    Returns ``{"bcd", "scd", "wcd", "p_strong", "p_weak", "kl"}``, each [B], with
    KL = BCD + p_S·SCD + p_W·WCD exactly. ``strong`` is a [B, C] mask (bool or 0/1) with at least
    one strong class per row, e.g. from ``strong_set``. SCD is 0 when S holds one class, WCD when W
    holds at most one. With S = {target}, BCD = TCKD and WCD = NCKD. Zhang, Chen, Ning, Yang,
    Yuan 2024, arXiv 2410.14741, eq. 3; METHODS.md §4.
    """
    return _cakd_components(student_logits, teacher_logits, strong, temperature=temperature, where="cakd_components")


def _cakd_components(
    student_logits: Any, teacher_logits: Any, strong: Any, *, temperature: Any, where: str
) -> dict[str, Tensor]:
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    mask = check_multi_hot(
        "strong", strong, s.shape[0], s.shape[1], where=where, what="a strong-set mask (see strong_set)"
    ).to(s.device)
    T = check_positive("temperature", temperature, where=where)
    return _split_components(s, t, mask, T)


def cakd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    strong: Tensor,
    *,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> Tensor:
    """CAKD: T²·(BCD + α·SCD + β·WCD), batch mean. Zhang et al. 2024, arXiv 2410.14741; METHODS.md §4."""
    where = "cakd_loss"
    alpha = check_nonnegative("alpha", alpha, where=where)
    beta = check_nonnegative("beta", beta, where=where)
    parts = _cakd_components(student_logits, teacher_logits, strong, temperature=temperature, where=where)
    T = float(temperature)
    return T * T * (parts["bcd"] + alpha * parts["scd"] + beta * parts["wcd"]).mean()
