"""Soft labels at the run's temperature: nearly one-hot (no dark knowledge) or nearly uniform (no
signal). Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531:
the information is in the ratios of small probabilities, which T > 1 raises (METHODS §2)."""

from __future__ import annotations

import math

import torch

from kdcore.doctor.context import Context, Skip, fmt, stats_dtype
from kdcore.doctor.findings import FigureData, Finding

ONE_HOT_MAX_PROB = 0.99  # mean teacher max probability at or above this: nearly one-hot
UNIFORM_ENTROPY = 0.98  # mean entropy / ln(C) at or above this: nearly uniform
GRID = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)


def _chunk_stats(rows: torch.Tensor, temps: list[float]) -> torch.Tensor:
    """Per temperature: (Σ max probability, Σ entropy) over rows [n, C] of softmax(rows / T) -> float64 [K, 2].

    With d = z − max z ≤ 0 and w = d / T: max probability = 1 / Σ exp(w) and entropy
    H = log Σ exp(w) − Σ exp(w)·w / Σ exp(w) (no cancellation: every w ≤ 0; 0·log 0 = 0)."""
    out = torch.zeros(len(temps), 2, dtype=torch.float64)
    z = rows.to(stats_dtype(rows.shape[-1]))  # [n, C]
    d = z - z.max(-1, keepdim=True).values  # [n, C], ≤ 0 (−inf where masked)
    masked = bool(torch.isinf(d).any())
    for k, T in enumerate(temps):
        w = d / T
        e = w.exp()  # [n, C]
        total = e.sum(-1)  # [n], ≥ 1
        ew = torch.where(e > 0, e * w, 0.0) if masked else e * w
        out[k, 0] = total.double().reciprocal().sum()
        out[k, 1] = (total.double().log() - ew.sum(-1).double() / total.double()).sum()
        del w, e, ew
    return out


def _stats(ctx: Context, temps: list[float]) -> list[tuple[float, float]]:
    """(mean max probability, mean entropy / ln C) of the teacher's soft labels at each T, streamed over rows."""
    logits = ctx.logits("teacher", "train")
    total, n = torch.zeros(len(temps), 2, dtype=torch.float64), 0
    for rows, _ in ctx.chunks(logits, ctx.train_probe[1]):  # rows [n, C]
        total += _chunk_stats(rows, temps)
        n += rows.shape[0]
    mean = total / max(n, 1)
    log_c = math.log(logits.shape[-1])
    return [(float(m), float(e) / log_c) for m, e in mean.tolist()]


def _sweep(ctx: Context) -> tuple[float, float, float, list, list, list]:
    T = ctx.temperature
    if T is None:
        raise Skip("the objective uses no temperature (no soft labels to inspect)")
    ctx.logits("teacher", "train")  # needs the teacher and the data (Skip otherwise)
    if ctx.task == "multilabel":
        raise Skip("multi-label teachers give one sigmoid per class, not a softmax over classes")
    grid = sorted(set(GRID) | {T})
    if "_soft_label_stats" not in ctx.notes:  # shared by both checks: one pass over the probe
        ctx.notes["_soft_label_stats"] = _stats(ctx, grid)
    stats = ctx.notes["_soft_label_stats"]
    max_p, ent = stats[grid.index(T)]
    return T, max_p, ent, grid, [s[0] for s in stats], [s[1] for s in stats]


def _figure(T: float, grid: list, max_ps: list, ents: list) -> FigureData:
    return FigureData(
        "lines",
        "Teacher soft labels against temperature",
        list(grid),
        {"mean max probability": max_ps, "mean entropy / ln C": ents},
        x_title="temperature T",
        y_title="value",
        marker_x=T,
        log_x=True,
    )


def check_one_hot(ctx: Context) -> Finding | None:
    T, max_p, ent, grid, max_ps, ents = _sweep(ctx)
    if max_p < ONE_HOT_MAX_PROB:
        return None
    better = next((t for t, m in zip(grid, max_ps) if t > T and m <= 0.9), None)
    fix = (
        f"Raise the temperature to about T = {fmt(better)} (the teacher's mean max probability there is "
        f"{fmt(max_ps[grid.index(better)])}), so the non-target classes carry signal."
        if better is not None
        else "Even T = 64 leaves the labels nearly one-hot: the teacher's logit gaps are huge. Standardise the "
        "logits (params standardize: true) or use DKD, which weights the non-target classes separately (beta)."
    )
    return Finding(
        "soft_labels.one_hot",
        "warning",
        f"The teacher's soft labels at T = {fmt(T)} are nearly one-hot: the student learns little more "
        f"than from the hard labels.",
        {
            "temperature": T,
            "teacher_max_prob_mean": max_p,
            "teacher_entropy_over_ln_c": ent,
            "dark_knowledge": 1.0 - max_p,
        },
        fix,
        _figure(T, grid, max_ps, ents),
    )


def check_uniform(ctx: Context) -> Finding | None:
    T, max_p, ent, grid, max_ps, ents = _sweep(ctx)
    if ent < UNIFORM_ENTROPY:
        return None
    better = next((t for t, e in reversed(list(zip(grid, ents))) if t < T and e <= 0.9), None)
    fix = (
        f"Lower the temperature to about T = {fmt(better)} (normalised entropy {fmt(ents[grid.index(better)])} there)."
        if better is not None
        else "Even T = 0.5 leaves the labels nearly uniform: the teacher barely separates the classes. Check that it "
        "is trained and loaded (its accuracy), and that its outputs are logits, not probabilities."
    )
    return Finding(
        "soft_labels.uniform",
        "warning",
        f"The teacher's soft labels at T = {fmt(T)} are nearly uniform: they say almost nothing about "
        f"which class is right.",
        {
            "temperature": T,
            "teacher_max_prob_mean": max_p,
            "teacher_entropy_over_ln_c": ent,
            "uniform_max_prob": 1.0 / ctx.logits("teacher", "train").shape[-1],
        },
        fix,
        _figure(T, grid, max_ps, ents),
    )
