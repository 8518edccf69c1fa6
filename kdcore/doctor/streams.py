"""Statistics of a model's probe outputs streamed over chunks of rows (`Context.chunks`), so a
language model's [positions, vocabulary] probabilities are never held whole (float32 from
LARGE_VOCAB classes on, float64 below; sums accumulate in float64):
next-token loss and accuracy, the probability mass on a vocabulary tail, the top-class confidence
at a temperature, and the temperature that minimises the loss on a grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kdcore.doctor.context import Context, stats_dtype


def nll_accuracy(ctx: Context, who: str, split: str) -> tuple[float, float]:
    """(mean cross-entropy in nats, top-1 accuracy) of a model on the probe's scored rows (float32 CE)."""
    logits = ctx.logits(who, split)
    targets = (ctx.train_probe if split == "train" else ctx.val_probe)[1]
    nll, right, n = 0.0, 0, 0
    for rows, labels in ctx.chunks(logits, targets):  # rows [n, V], labels [n]
        nll += float(torch.nn.functional.cross_entropy(rows.float(), labels, reduction="sum"))
        right += int((rows.argmax(-1) == labels).sum())
        n += labels.shape[0]
    return nll / max(n, 1), right / max(n, 1)


def tail_mass(ctx: Context, who: str, start: int, temperature: float) -> float:
    """Mean probability softmax(z / T) puts on the entries start.. of the vocabulary (training probe)."""
    total, n = 0.0, 0
    for rows, _ in ctx.chunks(ctx.logits(who, "train"), ctx.train_probe[1]):
        z = rows.to(stats_dtype(rows.shape[-1])) / temperature  # [n, V]
        total += float((torch.logsumexp(z[:, start:], -1) - torch.logsumexp(z, -1)).double().exp().sum())
        n += rows.shape[0]
    return total / max(n, 1)


def confidence(ctx: Context, logits: Tensor, targets: Tensor, tau: float = 1.0) -> tuple[Tensor, Tensor]:
    """(top-class probability of softmax(z / τ) [N] float64, top class right [N] bool) over the scored rows."""
    conf, right = [], []
    for rows, labels in ctx.chunks(logits, targets):
        z = rows.to(stats_dtype(rows.shape[-1])) / tau  # [n, V]
        top = z.max(-1)
        conf.append((top.values - torch.logsumexp(z, -1)).double().exp())
        right.append(top.indices == labels)
    return torch.cat(conf), torch.cat(right)


def nll_at(ctx: Context, logits: Tensor, targets: Tensor, tau: float) -> float:
    """Mean −log softmax(z / τ)_y over the scored rows, in float64 (log-sum-exp: no probabilities formed)."""
    total, n = 0.0, 0
    for rows, labels in ctx.chunks(logits, targets):
        z = rows.to(stats_dtype(rows.shape[-1])) / tau  # [n, V]
        total += float((torch.logsumexp(z, -1) - z.gather(1, labels[:, None])[:, 0]).double().sum())
        n += labels.shape[0]
    return total / max(n, 1)


def grid_argmin_unimodal(f: Callable[[float], float], grid: Sequence[float]) -> float:
    """The grid point with the smallest f, for f unimodal along the grid (a convex function of a monotone
    reparametrisation, e.g. NLL(1/τ)): a binary search on the slope, about 2·log2(len(grid)) evaluations."""
    seen: dict[int, float] = {}

    def at(i: int) -> float:
        if i not in seen:
            seen[i] = f(grid[i])
        return seen[i]

    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if at(mid) <= at(mid + 1):
            hi = mid
        else:
            lo = mid + 1
    return grid[lo]
