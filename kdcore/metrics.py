"""Small evaluation metrics on tensors: accuracy, disagreement, calibration (METHODS §10, §11).

These are the numbers the doctor and the run reports need inside kdcore (which imports no
analyses). `analyses.calibration` draws the reliability diagram and reports MCE, NLL and Brier.

Calibration follows Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017 (arXiv 1706.04599): confidence is the top-class probability; M equal-width bins, bin m
holding (m−1)/M < conf ≤ m/M; ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)|.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore.validation import check_array, check_int_range, check_labels

__all__ = ["accuracy", "disagreement", "reliability_bins", "expected_calibration_error"]


def _probs_and_labels(probs: Any, labels: Any, where: str) -> tuple[Tensor, Tensor]:
    p = check_array("probs", probs, where=where, dims=2)                           # [N, C] float64
    if bool((p < 0).any() or (p > 1).any()) or bool(((p.sum(1) - 1).abs() > 1e-3).any()):
        raise ValueError(f"The 'probs' argument of {where} must hold one probability distribution per row "
                         f"(values in [0, 1] summing to 1). Got values from {float(p.min()):.4g} to "
                         f"{float(p.max()):.4g}; pass softmax(logits), not logits.")
    y = check_labels(torch.as_tensor(labels).to(p.device), p.shape[0], p.shape[1], where=where)  # [N]
    return p, y


def accuracy(scores: Any, labels: Any) -> float:
    """Share of rows whose top score is the label; scores [N, C] (logits or probabilities), labels [N].
    Rows whose label is -100 (nothing to predict, as in causal LM targets) are left out."""
    s = check_array("scores", scores, where="accuracy", dims=2)                     # [N, C]
    y = torch.as_tensor(labels).to(s.device).long().flatten()                       # [N]
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"The 'labels' argument of accuracy must hold one label per row of 'scores' ({s.shape[0]}). "
                         f"Got {y.shape[0]} labels instead.")
    keep = y != -100
    if not bool(keep.any()):
        raise ValueError("The 'labels' argument of accuracy marks every row as -100: there is nothing to score.")
    y = check_labels(y[keep], int(keep.sum()), s.shape[1], where="accuracy")
    return float((s[keep].argmax(1) == y).double().mean())


def disagreement(scores_a: Any, scores_b: Any) -> float:
    """Share of rows whose top class differs between two models' scores [N, C] (METHODS §11)."""
    a = check_array("scores_a", scores_a, where="disagreement", dims=2)
    b = check_array("scores_b", scores_b, where="disagreement", dims=2)
    if a.shape != b.shape:
        raise ValueError(f"The 'scores_a' and 'scores_b' arguments of disagreement must have the same shape. "
                         f"Got {tuple(a.shape)} and {tuple(b.shape)}.")
    return float((a.argmax(1) != b.argmax(1)).double().mean())


def reliability_bins(probs: Any, labels: Any, *, n_bins: int = 15) -> dict[str, Tensor]:
    """Per confidence bin: count, accuracy and mean confidence (NaN in empty bins), float64 [M] each;
    also 'lower' and 'upper' bin edges. Bin m (1-based) holds (m−1)/M < conf ≤ m/M."""
    p, y = _probs_and_labels(probs, labels, "reliability_bins")
    m = check_int_range("n_bins", n_bins, 1, 10_000, where="reliability_bins")
    conf, pred = p.max(1)                                                            # [N], [N]
    edges = torch.arange(m + 1, dtype=torch.float64) / m                             # [M+1]
    idx = (torch.searchsorted(edges, conf.contiguous().cpu()) - 1).clamp(0, m - 1)   # edge[i-1] < conf <= edge[i]
    correct = (pred.cpu() == y.cpu()).double()
    count = torch.bincount(idx, minlength=m).double()                                # [M]
    acc_sum = torch.zeros(m, dtype=torch.float64).index_add_(0, idx, correct)
    conf_sum = torch.zeros(m, dtype=torch.float64).index_add_(0, idx, conf.cpu())
    nan = torch.full_like(count, float("nan"))
    return {"lower": edges[:-1], "upper": edges[1:], "count": count,
            "accuracy": torch.where(count > 0, acc_sum / count.clamp_min(1), nan),
            "confidence": torch.where(count > 0, conf_sum / count.clamp_min(1), nan)}


def expected_calibration_error(probs: Any, labels: Any, *, n_bins: int = 15) -> float:
    """ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| over M equal-width bins (Guo et al. 2017, arXiv 1706.04599)."""
    b = reliability_bins(probs, labels, n_bins=n_bins)
    used = b["count"] > 0
    share = b["count"][used] / b["count"].sum()
    return float((share * (b["accuracy"][used] - b["confidence"][used]).abs()).sum())
