"""Zero-shot knowledge transfer by adversarial belief matching (methods/14 §14.6).

    x_p = G(z),  z ~ N(0, I)
    D   = (1/(N·C))·Σ_n KL(softmax(z_T(x_p)/τ) ‖ softmax(z_S(x_p)/τ))   τ = 1, no T² factor
    L_G = −D;   L_S = D + β·Σ_l mean_{n,j}(a(A_S^l)_j − a(A_T^l)_j)²,  a(A) = vec(mean_c A_c²)/‖·‖₂ (§7)

Micaelli & Storkey, NeurIPS 2019, arXiv 1905.09768; code github.com/polo5/ZeroShotKnowledgeTransfer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kdcore.losses._inputs import _check_pair
from kdcore.losses._kl import _tempered_kl, _upcast
from kdcore.losses.attention import attention_transfer_loss
from kdcore.validation import InvalidParameterError, check_nonnegative, check_positive

KL_REDUCTIONS = ("elementwise_mean", "batchmean")


def _check_acts(student_acts: Sequence[Tensor], teacher_acts: Sequence[Tensor], resize: bool, where: str) -> None:
    if len(student_acts) != len(teacher_acts):
        raise InvalidParameterError(
            f"{where} pairs student and teacher activations one to one. Got {len(student_acts)} student and "
            f"{len(teacher_acts)} teacher activation maps: give one teacher map per student map."
        )
    for i, (a, b) in enumerate(zip(student_acts, teacher_acts)):
        if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
            raise InvalidParameterError(
                f"Activation pair {i} of {where} must be feature maps [B, C, H, W] of the same batch. Got "
                f"{tuple(a.shape)} and {tuple(b.shape)}."
            )
        if not resize and a.shape[2:] != b.shape[2:]:
            raise InvalidParameterError(
                f"Activation pair {i} of {where} has spatial sizes {tuple(a.shape[2:])} (student) and "
                f"{tuple(b.shape[2:])} (teacher): this signals a wrong layer pairing. Pair layers of the same "
                f"size, or pass resize=True (bilinear resize, §7)."
            )


def belief_divergence(
    student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 1.0, kl_reduction: str = "elementwise_mean"
) -> Tensor:
    """D: KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) summed over the batch, divided by N·C ("elementwise_mean",
    the authors' F.kl_div default) or by N ("batchmean", C times the default). No T² factor."""
    where = "belief_divergence"
    s, t = _check_pair(student_logits, teacher_logits, where=where, allow_neg_inf=False)
    tau = check_positive("temperature", temperature, where=where)
    if kl_reduction not in KL_REDUCTIONS:
        raise InvalidParameterError(
            f"The 'kl_reduction' parameter of {where} must be one of {KL_REDUCTIONS}. Got {kl_reduction!r} instead."
        )
    s, t = _upcast(s, t)
    per_row = _tempered_kl(s, t, tau)  # [N]
    div = s.shape[0] * (s.shape[1] if kl_reduction == "elementwise_mean" else 1)
    return per_row.sum() / div


def zero_shot_losses(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_acts: Sequence[Tensor] = (),
    teacher_acts: Sequence[Tensor] = (),
    *,
    beta: float = 250.0,
    temperature: float = 1.0,
    kl_reduction: str = "elementwise_mean",
    resize: bool = False,
) -> tuple[Tensor, Tensor]:
    """(L_S, L_G) = (D + β·Σ_l AT_l, −D). The caller detaches what each player must not train: the
    teacher's outputs in the student step; nothing in the generator step (its gradient flows through
    both networks into G)."""
    where = "zero_shot_losses"
    beta = check_nonnegative("beta", beta, where=where)
    _check_acts(student_acts, teacher_acts, resize, where)
    d = belief_divergence(student_logits, teacher_logits, temperature=temperature, kl_reduction=kl_reduction)
    at = [attention_transfer_loss(a, b, p=2) for a, b in zip(student_acts, teacher_acts)]
    student_loss = d + beta * torch.stack(at).sum() if at else d
    return student_loss, -d


def zero_shot_schedule(n_pseudo_batches: int, n_g: int = 1, n_s: int = 10) -> list[tuple[int, str]]:
    """The step plan: for every pseudo-batch k (a fresh z), n_G generator steps then n_S student steps:
    [(k, "generator"), …, (k, "student"), …]; N_iter·(n_G + n_S) steps in all."""
    for name, v in (("n_pseudo_batches", n_pseudo_batches), ("n_g", n_g), ("n_s", n_s)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidParameterError(
                f"The '{name}' parameter of zero_shot_schedule must be an integer ≥ 1. Got {v!r} instead."
            )
    return [(k, who) for k in range(n_pseudo_batches) for who in ["generator"] * n_g + ["student"] * n_s]
