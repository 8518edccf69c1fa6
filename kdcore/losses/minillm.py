"""MiniLLM's reverse-KL policy gradient, single-update form (methods/15 §15.4; Gu et al., ICLR 2024,
arXiv 2306.08543; microsoft/LMOps minillm).

    L̂ = (1/N) Σ_i Σ_{t∈K_i} w_t · [ KL(q_t ‖ p_t) − R̄_{t+1} · log q_θ(y_t | y_<t, x) ]
    r_t = log p_t(y_t) − log q°_t(y_t);   w_t = q°_t(y_t) / (α·p_t(y_t) + (1−α)·q°_t(y_t))
    R̄_{t+1} = mean of r over the kept positions after t (0 at the last); N = Σ_i |K_i|

q° is the student at sampling time (``sample_logprobs``; default the student's own logits, detached):
r, w and R̄ are constants; KL and log q carry the gradient. ``length_norm=False`` uses the sum
R_{t+1} = Σ_{t'>t} r_t' (the unnormalised eq. 3, whose expectation is the exact ∇KL(q‖p)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kdcore.divergences import token_divergence
from kdcore.losses.sequence_masks import kept_values, shifted
from kdcore.validation import InvalidParameterError, check_positive, check_range


def minillm_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tokens: Tensor,
    labels: Tensor,
    *,
    sample_logprobs: Tensor | None = None,
    mix_alpha: float = 0.2,
    temperature: float = 1.0,
    length_norm: bool = True,
) -> dict[str, Tensor]:
    """{"loss", "single_step", "long"} scalars and {"w", "rnorm", "reward"} [B, L−1] (0 where masked).

    student_logits, teacher_logits: [B, L, V]; tokens: [B, L] the input ids (sampled completions);
    labels: [B, L] HF labels (-100 on prompt, padding and after the stop token);
    sample_logprobs: [B, L] log q°(tokens[:, j] | tokens[:, <j]) at sampling time (column 0 unused).
    """
    where = "minillm_loss"
    check_range("mix_alpha", mix_alpha, 0.0, 1.0, where=where, hi_open=True)
    check_positive("temperature", temperature, where=where)
    s, t, _, keep = shifted(student_logits, teacher_logits, labels, where=where)
    assert t is not None
    y = _taken(tokens, student_logits, labels, keep, where)  # [B, L−1]
    logq = torch.log_softmax(_wide(s) / temperature, dim=-1).gather(-1, y[..., None])[..., 0]  # [B, L−1]
    logp = torch.log_softmax(_wide(t) / temperature, dim=-1).gather(-1, y[..., None])[..., 0].detach()
    logq0 = _sample_logprobs(sample_logprobs, logq, tokens, where)
    zero = torch.zeros_like(logq0)
    reward = torch.where(keep, logp - logq0, zero)  # r_t, constant
    w = torch.where(keep, _weights(logp, logq0, mix_alpha), zero)
    rnorm = _future_reward(reward, keep, length_norm)  # R̄_{t+1}
    kl = kept_values(token_divergence(s[keep], t[keep], "rkl", temperature=temperature), keep)  # [B, L−1]
    n = keep.sum()
    single = (w * kl).sum() / n
    long = (w * torch.where(keep, -rnorm * logq, zero)).sum() / n
    return {"loss": single + long, "single_step": single, "long": long, "w": w, "rnorm": rnorm, "reward": reward}


def _wide(x: Tensor) -> Tensor:
    """float64 stays float64; any other float dtype is computed in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _taken(tokens: Tensor, logits: Tensor, labels: Tensor, keep: Tensor, where: str) -> Tensor:
    """The taken tokens y_{j+1} of the shifted positions [B, L−1] (0 where masked); checks shape and range."""
    if not isinstance(tokens, Tensor) or tuple(tokens.shape) != tuple(logits.shape[:2]) or tokens.is_floating_point():
        raise InvalidParameterError(
            f"tokens of {where} must be integer input ids shaped like logits[..., 0], {tuple(logits.shape[:2])}. "
            f"Got {getattr(tokens, 'shape', type(tokens).__name__)} instead."
        )
    v = logits.shape[-1]
    if bool(((tokens < 0) | (tokens >= v)).any()):
        raise InvalidParameterError(f"tokens of {where} must be ids in [0, {v}); got ids outside that range.")
    y = tokens[:, 1:]
    if bool((labels[:, 1:][keep] != y[keep]).any()):
        raise InvalidParameterError(
            f"labels of {where} must equal tokens at every kept position (labels = input ids with -100 elsewhere)."
        )
    return torch.where(keep, y, torch.zeros_like(y))


def _sample_logprobs(given: Tensor | None, logq: Tensor, tokens: Tensor, where: str) -> Tensor:
    """log q° of the taken tokens, [B, L−1], no gradient."""
    if given is None:
        return logq.detach()
    if not isinstance(given, Tensor) or tuple(given.shape) != tuple(tokens.shape):
        raise InvalidParameterError(
            f"sample_logprobs of {where} must be a float tensor shaped like tokens, {tuple(tokens.shape)}. "
            f"Got {getattr(given, 'shape', type(given).__name__)} instead."
        )
    out = given[:, 1:].detach().to(logq.dtype)
    if not bool(torch.isfinite(out).all()):
        raise InvalidParameterError(f"sample_logprobs of {where} must be finite (log-probabilities of taken tokens).")
    return out


def _weights(logp: Tensor, logq0: Tensor, alpha: float) -> Tensor:
    """w_t = q° / (α p + (1 − α) q°), computed in log space; exactly 1 when α = 0."""
    if alpha == 0.0:
        return torch.ones_like(logq0)
    mix = torch.logaddexp(logp + math.log(alpha), logq0 + math.log1p(-alpha))
    return torch.exp(logq0 - mix)


def _future_reward(reward: Tensor, keep: Tensor, length_norm: bool) -> Tensor:
    """R̄_{t+1}: the mean (length_norm) or the sum of r over the kept positions after t; 0 where none."""
    after = reward.flip(1).cumsum(1).flip(1) - reward  # Σ_{t'>t} r (masked r are 0)
    if not length_norm:
        return torch.where(keep, after, torch.zeros_like(after))
    k = keep.to(reward.dtype)
    count = k.flip(1).cumsum(1).flip(1) - k
    return torch.where(keep & (count > 0), after / count.clamp_min(1), torch.zeros_like(after))
