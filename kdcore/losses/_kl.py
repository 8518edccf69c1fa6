"""Log-space helpers shared by the losses: compute dtype, safe KL, renormalised log-softmax.

METHODS.md conventions: compute in float32 or wider whatever the input dtype; entries of a
distribution that are exactly 0 (a logit of -inf) add 0, never NaN; a distribution renormalised
inside a set of classes is a log-softmax over those classes with the others masked to -inf, never
p_i / sum(p) (that quotient underflows to a silent 0 once the set's mass does).

Private: callers validate their arguments first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.dtypes import compute_dtype

NEG_INF = float("-inf")


def _upcast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The tensors cast to one compute dtype (float32 or wider); gradients flow back to the inputs."""
    dtype = compute_dtype(*tensors)
    return tuple(t.to(dtype) for t in tensors)


def _kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Elementwise p·(log p − log q), exactly 0 where p = 0 (log p = -inf), values and gradients.

    Both logs are replaced by 0 where p = 0 *before* the product (the "double where"), so neither
    the forward value nor any gradient meets -inf − (-inf). Where p > 0 and q = 0 the term is +inf,
    the true value.
    """
    has_mass = log_p > NEG_INF  # [..., C]
    lp = torch.where(has_mass, log_p, torch.zeros_like(log_p))
    lq = torch.where(has_mass, log_q, torch.zeros_like(log_q))
    return torch.where(has_mass, lp.exp() * (lp - lq), torch.zeros_like(lp))


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ_i p_i (log p_i − log q_i) over the last dimension: [..., C] -> [...]."""
    return _kl_terms(log_p, log_q).sum(dim=-1)


def _tempered_kl(student: Tensor, teacher: Tensor, temperature: float | Tensor) -> Tensor:
    """KL(softmax(z_t / T) ‖ softmax(z_s / T)) per row, no T² factor: logits [..., C] -> [...].

    The log-softmax pair of every §1-style KD term; callers validate T and upcast the logits first."""
    return _kl(torch.log_softmax(teacher / temperature, dim=-1), torch.log_softmax(student / temperature, dim=-1))


def _masked_logsumexp(x: Tensor, keep: Tensor) -> Tensor:
    """log Σ_{i ∈ keep} exp(x_i) over the last dimension; -inf for an empty (or all -inf) set.

    Unlike ``torch.logsumexp`` on an all -inf row, the gradient stays finite (0) there.
    """
    nonempty = (keep & (x > NEG_INF)).any(dim=-1, keepdim=True)  # [..., 1]
    masked = torch.where(keep, x, torch.full_like(x, NEG_INF))
    masked = torch.where(nonempty, masked, torch.zeros_like(x))  # dummy finite row
    lse = torch.logsumexp(masked, dim=-1)  # [...]
    return torch.where(nonempty.squeeze(-1), lse, torch.full_like(lse, NEG_INF))


def _renormalised_log_softmax(z: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Log-softmax of z over the classes in ``keep`` (others -inf): [..., C] -> ([..., C], [...]).

    Also returns whether each row has any finite logit inside the set; rows that do not get a
    dummy finite distribution that callers must discard.
    """
    nonempty = (keep & (z > NEG_INF)).any(dim=-1, keepdim=True)  # [..., 1]
    masked = torch.where(keep, z, torch.full_like(z, NEG_INF))
    masked = torch.where(nonempty, masked, torch.zeros_like(z))
    return torch.log_softmax(masked, dim=-1), nonempty.squeeze(-1)


def _set_kl(z_teacher: Tensor, z_student: Tensor, keep: Tensor) -> Tensor:
    """KL between teacher and student distributions renormalised inside ``keep``: [B, C] -> [B].

    Logits are already divided by the temperature. 0 where the teacher has no mass inside the set
    (an empty set, or every kept teacher logit -inf): there is nothing to match. +inf where the
    teacher has mass there but the student has none, the true value.
    """
    log_pt, teacher_has = _renormalised_log_softmax(z_teacher, keep)
    log_ps, student_has = _renormalised_log_softmax(z_student, keep)
    kl = _kl(log_pt, log_ps)  # [B]
    kl = torch.where(student_has, kl, torch.full_like(kl, float("inf")))
    return torch.where(teacher_has, kl, torch.zeros_like(kl))


def _binary_kl(log_p_in: Tensor, log_p_out: Tensor, log_q_in: Tensor, log_q_out: Tensor) -> Tensor:
    """KL((p_in, p_out) ‖ (q_in, q_out)) from the four log-masses: [B] each -> [B]."""
    log_p = torch.stack([log_p_in, log_p_out], dim=-1)  # [B, 2]
    log_q = torch.stack([log_q_in, log_q_out], dim=-1)
    return _kl(log_p, log_q)


def _kl_from_probs(p: Tensor, q: Tensor) -> Tensor:
    """KL(p ‖ q) over the last dimension from probabilities (attention rows): [..., L] -> [...].

    Entries with p = 0 (causal or padding masks) add exactly 0 and pass no NaN gradient: both
    probabilities are replaced by 1 there *before* the log.
    """
    has_mass = p > 0
    lp = torch.log(torch.where(has_mass, p, torch.ones_like(p)))
    lq = torch.log(torch.where(has_mass, q, torch.ones_like(q)))
    return torch.where(has_mass, p * (lp - lq), torch.zeros_like(p)).sum(dim=-1)
