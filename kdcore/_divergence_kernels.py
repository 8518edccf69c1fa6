"""Per-position divergence kernels on log-probabilities (METHODS.md §6).

Every kernel takes the student's and the teacher's log-probabilities of one chunk of positions,
``log_q`` [n, Vs] and ``log_p`` [n, Vt] (float32 or float64, already divided by the temperature),
and returns the divergence per position, [n]. Inputs are trusted: the public functions in
``kdcore.divergences`` validate arguments and build the log-probabilities.

Masked vocabulary entries (logit -inf) reach the kernels as a very negative *finite* log-probability
(see ``_log_probs``): their probability is exactly 0, so every ``p·(log p − log q)`` term they add is
``0·finite = 0``, never ``0·(−inf + inf) = NaN``, and their gradients stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def _log_probs(logits: Tensor, temperature: float, dtype: torch.dtype, neg_inf: bool = True) -> Tensor:
    """log softmax(z / T) in ``dtype``; -inf logits become finfo.min / 2 first (probability 0).

    Half of the most negative float leaves room for ``x − max`` inside log_softmax without
    overflowing back to -inf. The clamp has zero gradient there: masked entries get none.
    ``neg_inf=False`` (the caller knows no logit is -inf) skips the clamp, one pass less.
    """
    x = logits.to(dtype)  # [n, V]
    if temperature != 1.0:
        x = x / temperature
    if neg_inf:
        x = x.clamp(min=torch.finfo(dtype).min / 2)
    return torch.log_softmax(x, dim=-1)


def _kl(a: Tensor, log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(a ‖ b) = Σ_i a_i (log a_i − log b_i) per row; a = exp(log_a) passed in to share work."""
    return (a * (log_a - log_b)).sum(dim=-1)  # [n]


def _log_mix(log_a: Tensor, log_b: Tensor, w: float) -> Tensor:
    """log(w·a + (1 − w)·b) for 0 < w < 1, computed in log space (no underflow to log 0)."""
    return torch.logaddexp(log_a + math.log(w), log_b + math.log1p(-w))  # [n, V]


def fkl(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Forward KL(p ‖ q), teacher ‖ student: mode-covering."""
    return _kl(log_p.exp(), log_p, log_q)


def rkl(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Reverse KL(q ‖ p), student ‖ teacher: mode-seeking (MiniLLM, arXiv 2306.08543)."""
    return _kl(log_q.exp(), log_q, log_p)


def jsd(log_q: Tensor, log_p: Tensor, beta: float) -> Tensor:
    """β·KL(p ‖ m) + (1 − β)·KL(q ‖ m), m = β·p + (1 − β)·q (GKD, Agarwal et al., arXiv 2306.13649)."""
    log_m = _log_mix(log_p, log_q, beta)  # [n, V]
    return beta * _kl(log_p.exp(), log_p, log_m) + (1.0 - beta) * _kl(log_q.exp(), log_q, log_m)


def tvd(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Total variation distance ½·Σ|p − q|."""
    return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(dim=-1)


def skew_fkl(log_q: Tensor, log_p: Tensor, alpha: float) -> Tensor:
    """KL(p ‖ α·p + (1 − α)·q) (DistiLLM, Ko et al., arXiv 2402.03898); α = 0 is the forward KL."""
    if alpha == 0.0:
        return fkl(log_q, log_p)
    return _kl(log_p.exp(), log_p, _log_mix(log_p, log_q, alpha))


def skew_rkl(log_q: Tensor, log_p: Tensor, alpha: float) -> Tensor:
    """KL(q ‖ α·q + (1 − α)·p) (DistiLLM, arXiv 2402.03898); α = 0 is the reverse KL."""
    if alpha == 0.0:
        return rkl(log_q, log_p)
    return _kl(log_q.exp(), log_q, _log_mix(log_q, log_p, alpha))


def akl_head_weight(p: Tensor, q: Tensor, mu: float) -> Tensor:
    """AKL's weight w on the forward KL (Wu et al. 2024, arXiv 2404.02657), the authors' rule.

    Sort the vocabulary by p descending (stable: ties to the lower index); the head is the prefix
    whose cumulative teacher probability stays ≤ μ, its first entry always included; the tail is
    the rest. w = g_head / (g_head + g_tail) with g = Σ|p − q|; ½ when both gaps are 0.
    ``q`` must come in detached (the weights carry no student gradient).
    """
    p_sorted, order = torch.sort(p, dim=-1, descending=True, stable=True)  # [n, V], [n, V]
    gap = (p - q).abs().gather(-1, order)  # [n, V] in p's order
    head = p_sorted.cumsum(dim=-1) <= mu  # [n, V]
    head[:, 0] = True
    g_head = torch.where(head, gap, 0.0).sum(dim=-1)  # [n]
    g_tail = torch.where(head, 0.0, gap).sum(dim=-1)  # [n]
    total = g_head + g_tail
    return torch.where(total > 0, g_head / total.clamp_min(torch.finfo(p.dtype).tiny), 0.5)


def akl(log_q: Tensor, log_p: Tensor, mu: float) -> Tensor:
    """Adaptive KL w·fkl + (1 − w)·rkl, w from ``akl_head_weight`` (arXiv 2404.02657)."""
    p, q = log_p.exp(), log_q.exp()  # [n, V]
    w = akl_head_weight(p, q.detach(), mu)  # [n]
    return w * _kl(p, log_p, log_q) + (1.0 - w) * _kl(q, log_q, log_p)


def uld(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Σ_i |sort↓(p)_i − sort↓(q)_i|, the shorter vocabulary padded with zeros (ULD, Boizard et al.,
    arXiv 2402.12030). Teacher and student vocabularies may differ in size and in tokens."""
    p_sorted = log_p.exp().sort(dim=-1, descending=True).values  # [n, Vt]
    q_sorted = log_q.exp().sort(dim=-1, descending=True).values  # [n, Vs]
    k = min(p_sorted.shape[-1], q_sorted.shape[-1])
    # past the shared length one side is padded with zeros: |x − 0| = x (probabilities are ≥ 0)
    return (
        (p_sorted[:, :k] - q_sorted[:, :k]).abs().sum(dim=-1)
        + p_sorted[:, k:].sum(dim=-1)
        + q_sorted[:, k:].sum(dim=-1)
    )


KERNELS: dict[str, Callable[..., Tensor]] = {f.__name__: f for f in (fkl, rkl, jsd, tvd, skew_fkl, skew_rkl, akl, uld)}
