"""Self-distillation: Born-Again Networks (§13.4a) and Be Your Own Teacher (§13.4b) of methods/13.

Furlanello et al. ICML 2018, arXiv 1805.04770; Zhang et al. ICCV 2019, arXiv 1905.08094. The
generations and the exits are built by the runner; these are the losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _kl, _upcast
from kdcore.validation import (
    InvalidParameterError,
    check_finite_tensor,
    check_logits,
    check_nonnegative,
    check_positive,
    check_range,
)

# ---- §13.4a Born-Again Networks ---------------------------------------------------------------------------


def ban_components(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
    """Per-sample parts of the born-again loss: ``{"kl": [B], "ce": [B]}`` ("ce" only with labels).
    kl = KL(softmax(z_{k−1}) ‖ softmax(z_k)) at T = 1; ce = CE(y, softmax(z_k)). methods/13 §13.4a."""
    return _ban_components(student_logits, teacher_logits, labels, where="ban_components")


def _ban_components(student_logits: Any, teacher_logits: Any, labels: Any, *, where: str) -> dict[str, Tensor]:
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    y = None if labels is None else _check_class_labels(labels, s, where=where)
    s, t = _upcast(s, t)
    out = {"kl": _kl(torch.log_softmax(t, dim=-1), torch.log_softmax(s, dim=-1))}  # [B]
    if y is not None:
        out["ce"] = F.cross_entropy(s, y, reduction="none")  # [B]
    return out


def ban_loss(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None, label_weight: float = 0.0
) -> Tensor:
    """Born-again loss: batch mean of KL(softmax(z_{k−1}) ‖ softmax(z_k)) + w·CE(y, softmax(z_k)).

    §1 KD at T = 1, λ = 1 without labels when w = 0 (the default); "BAN+L" is w = 1 (a flagged
    choice: the paper gives no weighting). The paper writes the cross-entropy, which exceeds the KL
    by H(p) (same gradients). methods/13 §13.4a.
    """
    where = "ban_loss"
    w = check_nonnegative("label_weight", label_weight, where=where)
    if w > 0 and labels is None:
        raise InvalidParameterError(
            f"{where} got label_weight={label_weight} but labels=None: the label term needs "
            f"labels. Pass the labels, or label_weight=0.0."
        )
    parts = _ban_components(student_logits, teacher_logits, labels if w > 0 else None, where=where)
    return parts["kl"].mean() + (w * parts["ce"].mean() if w > 0 else 0.0)


def cwtm_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """Confidence-weighted by teacher max (BAN's control): Σ_n w_n·CE(y_n, q_n),
    w_n = max_c p_n,c / Σ_m max_c p_m,c (teacher probabilities at T = 1). methods/13 §13.4a."""
    where = "cwtm_loss"
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    y = _check_class_labels(labels, s, where=where)
    s, t = _upcast(s, t.detach())
    top = torch.softmax(t, dim=-1).amax(dim=-1)  # [B]
    return (top / top.sum() * F.cross_entropy(s, y, reduction="none")).sum()


def ban_ensemble(logits: Sequence[Tensor]) -> Tensor:
    """Born-again ensemble: the mean of the generations' softmax outputs, [B, C] probabilities.
    Pass generations 1…k (generation 0 excluded, a choice of the spec). methods/13 §13.4a."""
    where = "ban_ensemble"
    if isinstance(logits, Tensor) or not isinstance(logits, (list, tuple)) or not logits:
        raise InvalidParameterError(
            f"The 'logits' argument of {where} must be a non-empty list of [B, C] logit tensors, "
            f"one per generation. Got {type(logits).__name__} instead."
        )
    first = check_logits("logits[0]", logits[0], where=where, dims=2)
    rest = [_check_pair(first, z, where=where)[1] for z in logits[1:]]
    return torch.stack([torch.softmax(_upcast(z)[0], dim=-1) for z in (first, *rest)]).mean(dim=0)


# ---- §13.4b Be Your Own Teacher -----------------------------------------------------------------------


def byot_losses(
    exit_logits: Sequence[Tensor],
    labels: Tensor,
    adapted_feats: Sequence[Tensor] | None = None,
    deep_feat: Tensor | None = None,
    temperature: float = 3.0,
    alpha: float = 0.3,
    lam: float = 0.03,
    t_squared: bool = False,
    feature: str = "l2",
    feature_exits: Sequence[int] | None = None,
) -> tuple[list[Tensor], Tensor]:
    """Be Your Own Teacher: ``(per_exit, total)``, exits shallow → deep, the deepest (K) the teacher.

    L_K = CE(y, softmax(z_K));
    L_k = (1 − α)·CE(y, softmax(z_k)) + α·KL(softmax_T(z_K)⊥ ‖ softmax_T(z_k)) + λ·‖g_k(f_k) − f_K⊥‖   (k < K)
    total = Σ_k L_k. ⊥ = stop-gradient. `adapted_feats`: g_k(f_k) per shallow exit, each [N, D], with
    `deep_feat` f_K [N, D]; without them there is no feature term. `feature="l2"`: the Frobenius
    norm of the whole N×D difference (authors' code); "squared": per-sample squared L2, batch mean.
    `feature_exits`: the shallow exits (0-based) with a feature term (default all; the code skips
    the last). No T² (authors' value) unless `t_squared=True`. Defaults T = 3, α = 0.3, λ = 0.03.
    methods/13 §13.4b.
    """
    where = "byot_losses"
    T = check_positive("temperature", temperature, where=where)
    alpha = check_range("alpha", alpha, 0.0, 1.0, where=where)
    lam = check_nonnegative("lam", lam, where=where)
    exits = _check_exits(exit_logits, where)
    y = _check_class_labels(labels, exits[-1], where=where)
    feats = _check_byot_feats(adapted_feats, deep_feat, len(exits) - 1, feature, feature_exits, where)
    deep = _upcast(exits[-1])[0]
    log_p = torch.log_softmax(deep.detach() / T, dim=-1)  # [N, C] teacher, no grad
    kd_scale = alpha * (T * T if t_squared else 1.0)
    per_exit = []
    for k, z in enumerate(exits[:-1]):
        (z,) = _upcast(z)
        loss = (1 - alpha) * F.cross_entropy(z, y) + kd_scale * _kl(log_p, torch.log_softmax(z / T, dim=-1)).mean()
        if k in feats:
            loss = loss + lam * _feature_distance(feats[k], deep_feat, feature)  # type: ignore[arg-type]
        per_exit.append(loss)
    per_exit.append(F.cross_entropy(deep, y))
    return per_exit, torch.stack(per_exit).sum()


def _feature_distance(adapted: Tensor, deep: Tensor, feature: str) -> Tensor:
    a, d = _upcast(adapted, deep.detach())
    diff = (a - d).flatten(1)  # [N, D]
    return diff.norm() if feature == "l2" else diff.pow(2).sum(dim=1).mean()


def _check_exits(exit_logits: Any, where: str) -> list[Tensor]:
    if isinstance(exit_logits, Tensor) or not isinstance(exit_logits, (list, tuple)) or len(exit_logits) < 2:
        got = f"a list of {len(exit_logits)}" if isinstance(exit_logits, (list, tuple)) else type(exit_logits).__name__
        raise InvalidParameterError(
            f"The 'exit_logits' argument of {where} must be a list of at least 2 [N, C] logit "
            f"tensors (shallow exits first, the network's own head last). Got {got} instead. "
            f"Self-distillation needs a model with auxiliary exits."
        )
    deepest = check_logits(f"exit_logits[{len(exit_logits) - 1}]", exit_logits[-1], where=where, dims=2)
    for z in exit_logits[:-1]:
        _check_pair(z, deepest, where=where)
    return list(exit_logits)


def _check_byot_feats(
    adapted: Any, deep: Any, n_shallow: int, feature: str, exits: Any, where: str
) -> dict[int, Tensor]:
    if feature not in ("l2", "squared"):
        raise InvalidParameterError(
            f"The 'feature' parameter of {where} must be 'l2' or 'squared'. Got {feature!r} instead."
        )
    if adapted is None and deep is None:
        return {}
    if adapted is None or deep is None or len(adapted) != n_shallow:
        raise InvalidParameterError(
            f"{where} needs both 'adapted_feats' (one [N, D] tensor per shallow exit, "
            f"{n_shallow} in all) and 'deep_feat' ([N, D]), or neither. Got "
            f"adapted_feats={'None' if adapted is None else f'{len(adapted)} tensor(s)'}, "
            f"deep_feat={'None' if deep is None else 'a tensor'}."
        )
    chosen = list(range(n_shallow)) if exits is None else list(exits)
    if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_shallow for k in chosen):
        raise InvalidParameterError(
            f"The 'feature_exits' parameter of {where} must list shallow exit indices in "
            f"[0, {n_shallow - 1}]. Got {exits!r} instead."
        )
    d = check_finite_tensor("deep_feat", deep, where=where, min_dim=2)
    out = {}
    for k in chosen:
        f = check_finite_tensor(f"adapted_feats[{k}]", adapted[k], where=where, min_dim=2)
        if f.shape != d.shape:
            raise InvalidParameterError(
                f"adapted_feats[{k}] of {where} must have the shape of deep_feat {tuple(d.shape)}. "
                f"Got {tuple(f.shape)}. Its adapter g_k must map to the deepest feature size."
            )
        out[k] = f
    return out
