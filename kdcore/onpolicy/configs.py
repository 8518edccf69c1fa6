"""GKD's and MiniLLM's settings and GKD's per-step branch (methods/15 §15.3, §15.4).

GKDConfig(lmbda=0.5, divergence="jsd", beta=0.5, temperature=1.0, ...)   # checked when built
gkd_step_source(u, lmbda, seq_kd=False) -> "student" | "teacher" | "data"  # u ~ U[0, 1): u < λ samples
"""

from __future__ import annotations

from dataclasses import dataclass

from kdcore.losses.gkd import check_gkd_divergence
from kdcore.losses.sequence_masks import check_reduction
from kdcore.validation import InvalidParameterError, check_positive, check_range


def check_sampling(where: str, temperature: float, top_k: int, top_p: float, max_new_tokens: int) -> None:
    """HF sampling settings: τ_s > 0, top_k ≥ 0 (0 off), top_p in (0, 1] (1 off), max_new_tokens ≥ 1."""
    check_positive("temperature", temperature, where=where)
    check_range("top_p", top_p, 0.0, 1.0, where=where, lo_open=True)
    for name, value, low in (("top_k", top_k, 0), ("max_new_tokens", max_new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameterError(f"The '{name}' parameter of {where} must be an integer ≥ {low}. Got {value!r}.")


@dataclass(frozen=True)
class GKDConfig:
    """GKD (§15.3): λ the student-generated fraction, the divergence (β for jsd), sampling τ_s."""

    lmbda: float = 0.5
    divergence: str = "jsd"
    beta: float = 0.5
    temperature: float = 1.0  # sampling temperature τ_s (the paper's 1.0; TRL 0.9)
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seq_kd: bool = False  # the (1 − λ) branch samples the teacher instead of using the data
    reduction: str = "token"
    seed: int = 0

    def __post_init__(self) -> None:
        where = "GKDConfig"
        check_range("lmbda", self.lmbda, 0.0, 1.0, where=where)
        check_gkd_divergence(self.divergence, self.beta, where)
        check_sampling(where, self.temperature, self.top_k, self.top_p, self.max_new_tokens)
        check_reduction(self.reduction, where)


@dataclass(frozen=True)
class MiniLLMConfig:
    """MiniLLM (§15.4): tokens drawn from α·p + (1 − α)·q_θ, sampling settings."""

    mix_alpha: float = 0.2
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        where = "MiniLLMConfig"
        check_range("mix_alpha", self.mix_alpha, 0.0, 1.0, where=where, hi_open=True)
        check_sampling(where, self.temperature, self.top_k, self.top_p, self.max_new_tokens)


def gkd_step_source(u: float, lmbda: float, seq_kd: bool = False) -> str:
    """Where a GKD step's completions come from: u < λ → "student"; else "teacher" with seq_kd, else "data"."""
    check_range("lmbda", lmbda, 0.0, 1.0, where="gkd_step_source")
    check_range("u", u, 0.0, 1.0, where="gkd_step_source", hi_open=True)
    if u < lmbda:
        return "student"
    return "teacher" if seq_kd else "data"
