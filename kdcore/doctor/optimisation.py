"""Optimisation: the loss became NaN, diverged, or did not decrease; the learning rate is out of
the usual scale for the optimiser."""

from __future__ import annotations

import math

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding

MIN_STEPS = 8
WINDOW = 0.2  # first and last 20 % of the steps are compared
DIVERGE = 1.5  # last window mean ≥ 1.5× the first: diverging
FLAT = 0.95  # last window mean ≥ 0.95× the first: not decreasing
LR_RANGE = {"adam": (1e-5, 3e-2), "adamw": (1e-5, 3e-2), "sgd": (1e-4, 1.0)}  # usual peak learning rates


def _loss(ctx: Context) -> list[float]:
    s = ctx.metric("step", "loss")
    if s is None:
        raise Skip("the run recorded no per-step loss")
    return [float(v) for v in s]


def _finite_losses(ctx: Context) -> list[float]:
    losses = [v for v in _loss(ctx) if math.isfinite(v)]
    if len(losses) < MIN_STEPS:
        raise Skip(f"needs at least {MIN_STEPS} finite loss values; the run has {len(losses)}")
    return losses


def _windows(losses: list[float]) -> tuple[float, float]:
    k = max(1, int(len(losses) * WINDOW))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def _window_evidence(ctx: Context, losses: list[float], name: str, value: float | None) -> dict:
    """The evidence of a diverging / flat loss: the two windows' means, how they compare (name: value),
    and the optimiser's settings."""
    first, last = _windows(losses)
    return {
        "loss_first_window": first,
        "loss_last_window": last,
        name: value,
        "lr": ctx.config.lr,
        "optimizer": ctx.config.optimizer,
        "steps": len(losses),
    }


def _figure(ctx: Context) -> FigureData | None:
    df = ctx.record.steps
    if df is None or "loss" not in df.columns:
        return None
    comps = [
        c
        for c in df.columns
        if c not in ("step", "epoch", "lr", "teacher_logits_grad", "nonfinite_loss")
        and not str(c).startswith("sched_")  # scheduled/learned values (kdcore.jobs.schedules), not losses
        and df[c].notna().sum() > 1
    ]
    rows = df[df["loss"].notna()]
    return FigureData(
        "lines",
        "Training loss per step",
        rows["step"].tolist(),
        {c: [None if not math.isfinite(v) else v for v in rows[c].tolist()] for c in comps},
        x_title="step",
        y_title="loss",
    )


def check_nonfinite(ctx: Context) -> Finding | None:
    flagged = ctx.metric("step", "nonfinite_loss")
    losses = ctx.record.steps["loss"].tolist() if ctx.record.steps is not None and "loss" in ctx.record.steps else []
    error = ctx.record.error or ""
    bad_rows = [v for v in losses if v is not None and not math.isfinite(v)]
    said = ctx.record.state == "failed" and ("NaN" in error or "infinite" in error)
    if flagged is None and not bad_rows and not said:
        if ctx.record.steps is None:
            raise Skip("the run recorded no per-step metrics")
        return None
    finite = [v for v in losses if v is not None and math.isfinite(v)]
    steps = ctx.record.steps
    step = (
        int(steps.loc[steps["nonfinite_loss"].notna(), "step"].iloc[0])
        if flagged is not None and steps is not None
        else (ctx.record.summary or {}).get("failed_step")
    )
    return Finding(
        "optim.nonfinite",
        "error",
        f"The loss became NaN or infinite{f' at step {step}' if step else ''}, and the run stopped.",
        {
            "failed_step": step,
            "last_finite_loss": finite[-1] if finite else None,
            "max_finite_loss": max(finite) if finite else None,
            "lr": ctx.config.lr,
            "grad_clip": ctx.config.grad_clip,
        },
        f"Lower the learning rate (try lr = {fmt(ctx.config.lr / 10)}), clip gradients (grad_clip: 1.0), "
        f"and check the inputs for NaN or huge values.",
        _figure(ctx),
    )


def check_diverging(ctx: Context) -> Finding | None:
    losses = _finite_losses(ctx)
    first, last = _windows(losses)
    if last < DIVERGE * first:
        return None
    return Finding(
        "optim.diverging",
        "error",
        f"The loss is diverging: it rose from {fmt(first)} (first steps) to {fmt(last)} (last steps).",
        _window_evidence(ctx, losses, "ratio", last / first if first else None),
        f"Lower the learning rate (try lr = {fmt(ctx.config.lr / 10)}), add warm-up (warmup_steps: "
        f"{max(10, len(losses) // 10)}) or clip gradients (grad_clip: 1.0).",
        _figure(ctx),
    )


def check_not_decreasing(ctx: Context) -> Finding | None:
    losses = _finite_losses(ctx)
    first, last = _windows(losses)
    if last < FLAT * first or last >= DIVERGE * first:
        return None
    lo, hi = LR_RANGE.get(ctx.config.optimizer, (0, math.inf))
    hint = (
        f"raise the learning rate (lr = {fmt(ctx.config.lr)} is low for {ctx.config.optimizer}; try "
        f"{fmt(min(ctx.config.lr * 10, hi))})"
        if ctx.config.lr < lo * 10
        else f"lower the learning rate (try {fmt(ctx.config.lr / 10)}) in case steps overshoot"
    )
    return Finding(
        "optim.not_decreasing",
        "warning",
        f"The loss is not decreasing: {fmt(first)} over the first steps, {fmt(last)} over the last.",
        _window_evidence(ctx, losses, "relative_drop", 1 - last / first if first else None),
        f"Check that the student's parameters are in the optimiser and not frozen; {hint}; or train for more steps.",
        _figure(ctx),
    )


def check_lr_scale(ctx: Context) -> Finding | None:
    opt, lr = ctx.config.optimizer, float(ctx.config.lr)
    if opt not in LR_RANGE:
        raise Skip(f"no usual range known for optimizer {opt!r}")
    lo, hi = LR_RANGE[opt]
    if lo <= lr <= hi:
        return None
    high = lr > hi
    suggested = 1e-3 if opt in ("adam", "adamw") else 0.05
    return Finding(
        "optim.lr_scale",
        "warning",
        f"The learning rate {fmt(lr)} is far {'above' if high else 'below'} the usual range for "
        f"{opt} ({fmt(lo)} to {fmt(hi)}): expect {'unstable or diverging' if high else 'barely moving'} "
        f"training.",
        {"lr": lr, "optimizer": opt, "usual_low": lo, "usual_high": hi},
        f"Set lr to about {fmt(suggested)} for {opt} and adjust from there (a short sweep over 3 values "
        f"a factor 3 apart).",
        _figure(ctx),
    )
