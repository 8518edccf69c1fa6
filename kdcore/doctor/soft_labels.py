"""Soft labels at the run's temperature: nearly one-hot (no dark knowledge) or nearly uniform (no
signal). Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531:
the information is in the ratios of small probabilities, which T > 1 raises (METHODS §2)."""

from __future__ import annotations

import math

import torch

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding

ONE_HOT_MAX_PROB = 0.99  # mean teacher max probability at or above this: nearly one-hot
UNIFORM_ENTROPY = 0.98  # mean entropy / ln(C) at or above this: nearly uniform
GRID = (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0)


def _stats(rows: torch.Tensor, T: float) -> tuple[float, float]:
    """(mean max probability, mean entropy / ln C) of softmax(rows / T); rows [N, C]."""
    logp = torch.log_softmax(rows.double() / T, dim=-1)  # [N, C]
    p = logp.exp()
    ent = -(p * logp).nan_to_num(0.0).sum(-1)  # [N]; 0·log 0 = 0
    return float(p.max(-1).values.mean()), float(ent.mean() / math.log(rows.shape[-1]))


def _sweep(ctx: Context) -> tuple[float, float, float, list, list, list]:
    T = ctx.temperature
    if T is None:
        raise Skip("the objective uses no temperature (no soft labels to inspect)")
    x, y = ctx.train_probe
    rows, _ = ctx.flat(ctx.logits("teacher", "train"), y)  # [N, C]
    if ctx.task == "multilabel":
        raise Skip("multi-label teachers give one sigmoid per class, not a softmax over classes")
    grid = sorted(set(GRID) | {T})
    stats = [_stats(rows, t) for t in grid]
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
