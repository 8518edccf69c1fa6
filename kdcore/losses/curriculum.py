"""Curriculum distillation (methods/13 §13.3): CTKD's adversarially learned temperature (§13.3a),
teacher-difficulty ordering and exponential pacing (§13.3b), the loss-weight warm-up (§13.3c).

Li et al. AAAI 2023, arXiv 2211.16231 (CTKD); Hacohen & Weinshall ICML 2019, arXiv 1904.03626
(pacing); mdistiller's DKD warm-up. Epochs count from 1; pacing iterations from 0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _tempered_kl, _upcast
from kdcore.validation import (
    InvalidParameterError,
    check_logits,
    check_nonnegative,
    check_positive,
    check_range,
)


def _at_least(name: str, value: Any, lo: int, where: str) -> int:
    """An integer ≥ lo (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be an integer >= {lo}. Got {value!r} instead."
        )
    return int(value)


# ---- §13.3a CTKD ---------------------------------------------------------------------------------------


class _GradReverse(torch.autograd.Function):
    """Forward identity; backward multiplies the gradient by −scale."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float) -> Tensor:
    """Gradient-reversal layer: returns x; the gradient flowing back through it is multiplied by −scale."""
    return _GradReverse.apply(x, float(scale))


def ctkd_lambda(epoch: int, loops: int = 10, lambda_min: float = 0.0, lambda_max: float = 1.0) -> float:
    """λ_e = λ_min + ½(λ_max − λ_min)·(1 − cos(π·min(e, E_loops)/E_loops)), epoch e ≥ 1 (constant within it):
    ≈ 0.0245 at e = 1, 0.5 at e = 5, 1 from e = 10 with the defaults. methods/13 §13.3a."""
    return _ctkd_lambda(epoch, loops, lambda_min, lambda_max, where="ctkd_lambda")


def _ctkd_lambda(epoch: int, loops: int, lambda_min: float, lambda_max: float, *, where: str) -> float:
    e = _at_least("epoch", epoch, 1, where)
    n = _at_least("loops", loops, 1, where)
    return lambda_min + 0.5 * (lambda_max - lambda_min) * (1.0 - math.cos(math.pi * min(e, n) / n))


def ctkd_temperature(theta: Tensor | float, t_start: float = 1.0, t_range: float = 20.0) -> Tensor:
    """T = T_start + T_range·σ(θ), differentiable in θ (a tensor): T ∈ (T_start, T_start + T_range)."""
    th = theta if isinstance(theta, Tensor) else torch.tensor(float(theta), dtype=torch.float64)
    return t_start + t_range * torch.sigmoid(th)


def ctkd_step(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    theta: Tensor | float,
    epoch: int,
    gamma: float = 0.1,
    alpha: float = 0.9,
    t_start: float = 1.0,
    t_range: float = 20.0,
    loops: int = 10,
) -> dict[str, Any]:
    """One CTKD step: ``{"loss", "T", "lambda", "dloss_dtheta"}``.

    loss = γ·CE(y, softmax(z_s)) + α·T²·KL(softmax_T(z_t) ‖ softmax_T(z_s)) (batchmean) with the learned
    T = T_start + T_range·σ(θ); the T² uses the learned T and is differentiated. `dloss_dtheta` is ∂L/∂θ
    *before* the reversal. When `theta` is a tensor that requires grad (an nn.Parameter), it enters
    through a gradient-reversal layer, so `loss.backward()` gives θ the gradient −λ_e·∂L/∂θ (add weight
    decay in the optimiser), while the student gets ∂L/∂z_s. λ_e = `ctkd_lambda(epoch, loops)`.
    methods/13 §13.3a.
    """
    where = "ctkd_step"
    lam = _ctkd_lambda(epoch, loops, 0.0, 1.0, where=where)
    t_range = check_positive("t_range", t_range, where=where)
    t_start = check_nonnegative("t_start", t_start, where=where)
    gamma, alpha = (check_nonnegative(k, v, where=where) for k, v in (("gamma", gamma), ("alpha", alpha)))
    s, t = _check_pair(student_logits, teacher_logits, where=where)
    y = _check_class_labels(labels, s, where=where)
    s, t = _upcast(s, t)
    with torch.enable_grad():  # ∂L/∂θ also under no_grad
        th = _theta_input(theta, lam, s.dtype, where)  # scalar, graph to θ
        T = ctkd_temperature(th, t_start, t_range).to(s.dtype)
        kl = _tempered_kl(s, t, T).mean()
        loss = gamma * F.cross_entropy(s, y) + alpha * T * T * kl
        (dtheta,) = torch.autograd.grad(loss, th, retain_graph=True)
    return {"loss": loss, "T": T.detach(), "lambda": lam, "dloss_dtheta": dtheta.detach()}


def _theta_input(theta: Any, lam: float, dtype: torch.dtype, where: str) -> Tensor:
    """θ as a scalar tensor in the graph: through the reversal layer when it is trainable, else a fresh leaf."""
    if isinstance(theta, Tensor):
        if theta.numel() != 1 or not theta.is_floating_point() or not bool(torch.isfinite(theta).all()):
            raise InvalidParameterError(
                f"The 'theta' argument of {where} must be a finite float or a one-element float "
                f"tensor. Got a tensor of shape {tuple(theta.shape)} and dtype {theta.dtype}."
            )
        if theta.requires_grad:
            return grad_reverse(theta.reshape(()), lam).to(dtype)
        return theta.detach().reshape(()).to(dtype).requires_grad_()
    try:
        value = float(theta)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise InvalidParameterError(f"The 'theta' argument of {where} must be a finite float. Got {theta!r} instead.")
    return torch.tensor(value, dtype=dtype, requires_grad=True)


def ctkd_theta_step(theta: float, dloss_dtheta: float, lam: float, lr: float, weight_decay: float = 0.0) -> float:
    """One plain SGD step of θ through the reversal: θ − lr·(−λ·∂L/∂θ + wd·θ) (θ ascends the loss)."""
    where = "ctkd_theta_step"
    lr = check_nonnegative("lr", lr, where=where)
    lam = check_nonnegative("lam", lam, where=where)
    wd = check_nonnegative("weight_decay", weight_decay, where=where)
    return float(theta) - lr * (-lam * float(dloss_dtheta) + wd * float(theta))


# ---- §13.3b teacher-difficulty curriculum -------------------------------------------------------------


def curriculum_order(teacher_logits: Tensor, labels: Tensor, balance: bool = True) -> Tensor:
    """Sample indices [N] (long), easiest first by the teacher's difficulty d_n = −log softmax(z_t,n)[y_n].

    Stable sort (ties to the lower index). `balance=True` (the authors' default): the r-th easiest
    sample of every class for r = 0, 1, …, each group in global-rank order, concatenated — every prefix
    class-balanced to within one sample when classes are equal in size. methods/13 §13.3b.
    """
    where = "curriculum_order"
    t = check_logits("teacher_logits", teacher_logits, where=where, dims=2, allow_neg_inf=False)
    y = _check_class_labels(labels, t, where=where)
    if not isinstance(balance, bool):
        raise InvalidParameterError(
            f"The 'balance' parameter of {where} must be True or False. Got {balance!r} instead."
        )
    (t,) = _upcast(t.detach())
    difficulty = -torch.log_softmax(t, dim=-1).gather(1, y[:, None]).squeeze(1)  # [N]
    order = torch.sort(difficulty, stable=True).indices  # [N] ascending
    if not balance:
        return order
    rank_in_class = torch.empty_like(order)  # per position in `order`
    seen: dict[int, int] = {}
    for pos, c in enumerate(y[order].tolist()):
        rank_in_class[pos] = seen.get(c, 0)
        seen[c] = int(rank_in_class[pos]) + 1
    return order[torch.sort(rank_in_class, stable=True).indices]


def pacing(t: int, start: float = 0.04, inc: float = 1.9, step: int = 100) -> float:
    """Exponential pacing g(t) = min(start·inc^⌊t/step⌋, 1), iteration t ≥ 0: the fraction of the ordered
    data in the pool. Defaults reach the full set at t = 600. methods/13 §13.3b."""
    where = "pacing"
    t = _at_least("t", t, 0, where)
    start = check_range("start", start, 0.0, 1.0, where=where, lo_open=True)
    inc = check_range("inc", inc, 1.0, math.inf, where=where, lo_open=True, hi_open=True)
    step = _at_least("step", step, 1, where)
    k = t // step
    if k * math.log(inc) >= -math.log(start):  # start·inc^k ≥ 1, no overflow
        return 1.0
    return min(start * inc**k, 1.0)


def pool_size(t: int, n: int, start: float = 0.04, inc: float = 1.9, step: int = 100) -> int:
    """⌈N·g(t)⌉: how many of the ordered samples the pool holds at iteration t (batches are drawn
    uniformly from the pool). methods/13 §13.3b."""
    n = _at_least("n", n, 1, "pool_size")
    return min(n, math.ceil(n * pacing(t, start, inc, step)))


# ---- §13.3c warm-up --------------------------------------------------------------------------------------


def warmup_weight(epoch: int, warmup: float = 20) -> float:
    """w(e) = min(e/E_w, 1), epoch e ≥ 1 (constant within it): multiplies a distillation term, not the CE.
    mdistiller DKD: 0.05 at epoch 1, 1 from epoch 20. methods/13 §13.3c."""
    where = "warmup_weight"
    e = _at_least("epoch", epoch, 1, where)
    w = check_positive("warmup", warmup, where=where)
    return min(e / w, 1.0)


class GlobalTemperature(torch.nn.Module):
    """CTKD's global temperature module (zhengli97/CTKD `models/temp_global.py`): one learned scalar θ,
        T = T_start + T_range·σ(θ). Trained with the student (its optimiser group, the authors' choice, unless
    `weight_decay=False`, §13.3a's option); `ctkd_step` feeds θ
        through the gradient-reversal layer, so θ ascends the loss while the student descends it."""

    def __init__(
        self, theta: float = 1.0, t_start: float = 1.0, t_range: float = 20.0, weight_decay: bool = True
    ) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(float(theta)))  # [] the learned θ
        self.t_start, self.t_range = float(t_start), float(t_range)
        self.no_weight_decay = not weight_decay  # the optimiser puts θ in a group without weight decay

    def temperature(self) -> float:
        """The current T (a float, no graph)."""
        with torch.no_grad():
            return float(ctkd_temperature(self.theta.detach().double(), self.t_start, self.t_range))
