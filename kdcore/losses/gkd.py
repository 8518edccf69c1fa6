"""GKD's token objective (methods/15 §15.3; Agarwal et al., ICLR 2024, arXiv 2306.13649; TRL GKDTrainer).

    D(y|x) = (1/L_y) Σ_n D(p(·|y_<n, x) ‖ q(·|y_<n, x)),   D ∈ {fkl, rkl, jsd(β)} of METHODS §6

over the completion positions of the shifted labels (§15.0). ``reduction="token"`` pools the kept
positions of the batch (TRL); ``"sequence"`` averages per sequence first (the paper's eq. 2). The
branch between student-generated and data completions is the job's (kdcore.onpolicy.gkd_step_source).
"""

from __future__ import annotations

from torch import Tensor

from kdcore.divergences import token_divergence
from kdcore.losses.sequence_masks import check_reduction, kept_values, reduce_positions, shifted
from kdcore.validation import InvalidParameterError, check_positive, check_range

GKD_DIVERGENCES = ("jsd", "fkl", "rkl")


def check_gkd_divergence(divergence: str, beta: float, where: str) -> None:
    """divergence in GKD_DIVERGENCES; jsd needs β in (0, 1) (its end points are fkl and rkl)."""
    if divergence not in GKD_DIVERGENCES:
        raise InvalidParameterError(
            f"The 'divergence' parameter of {where} must be one of {GKD_DIVERGENCES}. Got {divergence!r} instead."
        )
    if divergence == "jsd":
        hint = "For β = 0 use divergence='fkl', for β = 1 divergence='rkl'."
        check_range("beta", beta, 0.0, 1.0, where=where, lo_open=True, hi_open=True, hint=hint)


def gkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    divergence: str = "jsd",
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "token",
) -> Tensor:
    """GKD's divergence on the completion positions, a scalar.

    student_logits, teacher_logits: [B, L, V] on the same input ids (teacher-forced);
    labels: [B, L] HF labels (input ids, -100 on prompt and padding; shifted here).
    """
    where = "gkd_loss"
    check_gkd_divergence(divergence, beta, where)
    check_positive("temperature", temperature, where=where)
    check_reduction(reduction, where)
    s, t, _, keep = shifted(student_logits, teacher_logits, labels, where=where)
    assert t is not None
    per = token_divergence(s[keep], t[keep], divergence, temperature=temperature, beta=beta)  # [K]
    return reduce_positions(kept_values(per, keep), keep, reduction)
