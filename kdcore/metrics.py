"""Evaluation metrics on tensors: task-aware accuracy and agreement, calibration (METHODS §10, §11).

The one home of these numbers: the runner, the doctor, `analyses` (scorecard, calibration) and the
app all call this module. `analyses.calibration` draws the reliability diagram and adds MCE, NLL
and Brier.

Calibration follows Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017 (arXiv 1706.04599): confidence is the top-class probability; M equal-width bins, bin m
holding (m−1)/M < conf ≤ m/M; ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)|.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore.data.base import IGNORE_INDEX  # -100: a target that is not predicted (causal LM padding, prompts)
from kdcore.validation import InvalidParameterError, as_tensor, check_array, check_int_range, check_labels

__all__ = [
    "TASKS",
    "IGNORE_INDEX",
    "predictions",
    "accuracy",
    "agreement",
    "disagreement",
    "reliability_bins",
    "confidence_bins",
    "calibration_error_from_bins",
    "expected_calibration_error",
    "check_probs_labels",
]

TASKS = ("classification", "multilabel", "causal_lm")
MULTILABEL_MODES = ("micro", "exact")  # per (sample, label) pair / every label of a sample right


_SUM_TOL = 1e-3  # how far a row of probabilities may sum from 1


def check_probs_labels(probs: Any, labels: Any, *, where: str) -> tuple[Tensor, Tensor]:
    """Probabilities [N, C] (each row a distribution) and class labels [N] -> float64 [N, C], long [N]."""
    p = check_array("probs", probs, where=where, dims=2)  # [N, C] float64
    if bool((p < 0).any() or (p > 1).any()):
        raise InvalidParameterError(
            f"The 'probs' argument of {where} must hold probabilities in [0, 1]. Got values "
            f"from {float(p.min()):.4g} to {float(p.max()):.4g}; pass softmax(logits), not logits."
        )
    sums = p.sum(1)
    if bool(((sums - 1).abs() > _SUM_TOL).any()):
        worst = float(sums[(sums - 1).abs().argmax()])
        raise InvalidParameterError(
            f"Each row of the 'probs' argument of {where} must sum to 1 (a distribution over "
            f"classes). Got a row summing to {worst:.6g}; pass softmax(logits)."
        )
    y = check_labels(_tensor("labels", labels, where).to(p.device), p.shape[0], p.shape[1], where=where)  # [N]
    return p, y


# --------------------------------------------------------------------------- task-aware accuracy
def _check_task(task: Any, where: str) -> str:
    if task not in TASKS:
        raise InvalidParameterError(f"The 'task' parameter of {where} must be one of {TASKS}. Got {task!r} instead.")
    return task


def _tensor(name: str, x: Any, where: str) -> Tensor:
    """A tensor, numpy array or nested list -> a detached tensor (dtype kept)."""
    return as_tensor(name, torch.as_tensor(x) if isinstance(x, (list, tuple)) else x, where=where)


def _scores(name: str, x: Any, where: str) -> Tensor:
    """Scores [..., C] (logits or probabilities; a tensor, numpy array or list), NaN refused; dtype kept."""
    x = _tensor(name, x, where)
    if x.dim() < 1 or x.numel() == 0 or x.shape[-1] == 0:
        raise InvalidParameterError(
            f"The '{name}' argument of {where} must be non-empty scores [..., C]. Got shape {tuple(x.shape)} instead."
        )
    if not x.is_floating_point():
        x = x.double()
    if bool(torch.isnan(x).any()):
        raise InvalidParameterError(
            f"The '{name}' argument of {where} holds NaN: there is no top class to take. "
            f"Got {int(torch.isnan(x).sum())} NaN value(s) in shape {tuple(x.shape)}."
        )
    return x


def predictions(scores: Any, *, task: str = "classification") -> Tensor:
    """What a model predicts: classification and causal_lm the top class, argmax over the last axis
    ([..., C] -> [...], ties to the lower index); multilabel every label whose logit is > 0, that is
    sigmoid > 0.5 ([N, C] -> bool [N, C])."""
    where = "predictions"
    task = _check_task(task, where)
    s = _scores("scores", scores, where)
    return s > 0 if task == "multilabel" else s.argmax(-1)


def _multi_hot(labels: Any, shape: tuple[int, ...], where: str) -> Tensor:
    y = _tensor("labels", labels, where)
    if tuple(y.shape) != shape:
        raise InvalidParameterError(
            f"The 'labels' argument of {where} (task 'multilabel') must be multi-hot of shape "
            f"{shape}, like the scores. Got shape {tuple(y.shape)} instead."
        )
    if not bool(((y == 0) | (y == 1)).all()):
        raise InvalidParameterError(
            f"The 'labels' argument of {where} (task 'multilabel') must hold only 0/1 "
            f"(or bool) values. Got values from {float(y.min()):g} to {float(y.max()):g}."
        )
    return y != 0


def _kept_labels(labels: Any, s: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """Class labels [...] matching scores [..., C] -> (kept positions bool [...], their labels [M])."""
    y = _tensor("labels", labels, where).to(s.device)
    if tuple(y.shape) != tuple(s.shape[:-1]):
        raise InvalidParameterError(
            f"The 'labels' argument of {where} must hold one label per row of 'scores' "
            f"(shape {tuple(s.shape[:-1])}). Got shape {tuple(y.shape)} instead."
        )
    keep = y != IGNORE_INDEX
    if not bool(keep.any()):
        raise InvalidParameterError(
            f"The 'labels' argument of {where} marks every row as {IGNORE_INDEX}: there is nothing to score."
        )
    kept = check_labels(y[keep], int(keep.sum()), s.shape[-1], where=where)
    return keep, kept


def _share(hits: Tensor) -> float:
    """The fraction of True entries, computed exactly (integer count / total, one float64 division)."""
    return int(hits.sum()) / hits.numel()


def accuracy(scores: Any, labels: Any, *, task: str = "classification", multilabel: str = "micro") -> float:
    """Task-aware accuracy (the one used by the runner, the doctor, the analyses and the app).

    - classification / causal_lm: scores [..., C] (logits or probabilities), labels [...] class
      indices; the share of positions whose top class is the label. Positions labelled -100 (nothing
      to predict, as in causal LM targets) are left out; if every one is -100 there is nothing to
      score and an error is raised.
    - multilabel: logits [N, C], multi-hot labels [N, C]; a label is predicted when its logit is > 0
      (sigmoid > 0.5). ``multilabel="micro"``: share of (sample, label) pairs right;
      ``"exact"``: share of samples with every label right (exact match).
    """
    where = "accuracy"
    task = _check_task(task, where)
    s = _scores("scores", scores, where)
    if task == "multilabel":
        if multilabel not in MULTILABEL_MODES:
            raise InvalidParameterError(
                f"The 'multilabel' parameter of {where} must be one of {MULTILABEL_MODES}. Got {multilabel!r} instead."
            )
        right = (s > 0) == _multi_hot(labels, tuple(s.shape), where).to(s.device)  # [N, C]
        return _share(right.all(-1) if multilabel == "exact" else right)
    keep, y = _kept_labels(labels, s, where)
    return _share(s[keep].argmax(-1) == y)


def _pair_hits(scores_a: Any, scores_b: Any, task: str, mask: Any, where: str) -> Tensor:
    """Per position (or per (sample, label) for multilabel): do the two models predict the same?"""
    task = _check_task(task, where)
    a, b = _scores("scores_a", scores_a, where), _scores("scores_b", scores_b, where)
    if a.shape != b.shape:
        raise InvalidParameterError(
            f"The 'scores_a' and 'scores_b' arguments of {where} must have the same shape. "
            f"Got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    same = (a > 0) == (b > 0) if task == "multilabel" else a.argmax(-1) == b.argmax(-1)
    if mask is None:
        return same.flatten()
    keep = _tensor("mask", mask, where).to(same.device)
    if tuple(keep.shape) != tuple(same.shape[: keep.dim()]) or keep.dtype != torch.bool or not bool(keep.any()):
        raise InvalidParameterError(
            f"The 'mask' argument of {where} must be a bool tensor over the leading axes of "
            f"the positions {tuple(same.shape)} that keeps at least one. "
            f"Got shape {tuple(keep.shape)}, dtype {keep.dtype}."
        )
    return same[keep].flatten()


def agreement(scores_a: Any, scores_b: Any, *, task: str = "classification", mask: Any = None) -> float:
    """Share of predictions two models have in common (METHODS §11), with ``predictions``' rules:
    classification / causal_lm the same top class per position ([..., C]); multilabel the same
    yes/no per (sample, label) ([N, C] logits). ``mask`` (bool, the leading shape) keeps positions,
    e.g. ``labels != -100`` for a causal LM; by default every position counts."""
    return _share(_pair_hits(scores_a, scores_b, task, mask, "agreement"))


def disagreement(scores_a: Any, scores_b: Any, *, task: str = "classification", mask: Any = None) -> float:
    """1 − agreement: share of positions whose predictions differ between two models (METHODS §11)."""
    hits = _pair_hits(scores_a, scores_b, task, mask, "disagreement")
    return int((~hits).sum()) / hits.numel()


# --------------------------------------------------------------------------- calibration
def reliability_bins(probs: Any, labels: Any, *, n_bins: int = 15) -> dict[str, Tensor]:
    """Per confidence bin: count, accuracy and mean confidence (NaN in empty bins), float64 [M] each;
    also 'lower' and 'upper' bin edges. Bin m (1-based) holds (m−1)/M < conf ≤ m/M."""
    p, y = check_probs_labels(probs, labels, where="reliability_bins")
    conf, pred = p.max(1)  # [N], [N]
    return confidence_bins(conf, pred.cpu() == y.cpu(), n_bins=n_bins)


def confidence_bins(confidence: Tensor, correct: Tensor, *, n_bins: int = 15) -> dict[str, Tensor]:
    """`reliability_bins` from each prediction's confidence [N] (top-class probability) and whether it
    was right (bool [N]): what a large vocabulary's calibration needs, without the [N, V] probabilities."""
    m = check_int_range("n_bins", n_bins, 1, 10_000, where="reliability_bins")
    conf = confidence.detach().double().cpu().reshape(-1)  # [N]
    edges = torch.arange(m + 1, dtype=torch.float64) / m  # [M+1]
    idx = (torch.searchsorted(edges, conf.contiguous()) - 1).clamp(0, m - 1)  # edge[i-1] < conf <= edge[i]
    right = correct.detach().cpu().reshape(-1).double()
    count = torch.bincount(idx, minlength=m).double()  # [M]
    acc_sum = torch.zeros(m, dtype=torch.float64).index_add_(0, idx, right)
    conf_sum = torch.zeros(m, dtype=torch.float64).index_add_(0, idx, conf)
    nan = torch.full_like(count, float("nan"))
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "accuracy": torch.where(count > 0, acc_sum / count.clamp_min(1), nan),
        "confidence": torch.where(count > 0, conf_sum / count.clamp_min(1), nan),
    }


def calibration_error_from_bins(bins: dict[str, Tensor]) -> float:
    """ECE from `reliability_bins` / `confidence_bins`: Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)|."""
    used = bins["count"] > 0
    share = bins["count"][used] / bins["count"].sum()
    return float((share * (bins["accuracy"][used] - bins["confidence"][used]).abs()).sum())


def expected_calibration_error(probs: Any, labels: Any, *, n_bins: int = 15) -> float:
    """ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| over M equal-width bins (Guo et al. 2017, arXiv 1706.04599)."""
    return calibration_error_from_bins(reliability_bins(probs, labels, n_bins=n_bins))
