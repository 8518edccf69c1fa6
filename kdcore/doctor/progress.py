"""Undertraining: the run stopped while it was still improving fast, so its numbers say how far
it got, not how far it can go. Judged on the last epoch: the validation metric still rising (or
its loss still falling) fast, or the distillation term still falling fast."""

from __future__ import annotations

from kdcore.doctor.context import DISTILL_COMPONENTS, Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding, ProposedRun

TERM_FALLING = 0.05  # the distillation term fell by ≥ 5 % over the last epoch: still falling fast
ACC_RISING = 0.01  # validation accuracy rose by ≥ 1 point over the last epoch (its loss not rising)
LOSS_FALLING = 0.02  # validation loss (language models) fell by ≥ 2 % over the last epoch
LONGER = 3  # "train longer": this many times the epochs
LR_UP = 3.0  # "raise the lr": by this factor


def _last_change(series: list[float]) -> float:
    """Relative fall of a series over its last step: (prev − last) / |prev| (positive: falling)."""
    prev, last = series[-2], series[-1]
    return (prev - last) / max(abs(prev), 1e-12)


def _epoch_series(ctx: Context, column: str) -> list[float] | None:
    s = ctx.metric("epoch", column)
    df = ctx.record.epochs
    if s is not None and df is not None and "epoch" in df.columns:
        s = s[df.loc[s.index, "epoch"] >= 1]  # epoch 0 holds the student before training, not a trend
    return [float(v) for v in s] if s is not None and len(s) >= 2 else None


def distill_series(ctx: Context) -> tuple[str, list[float]] | None:
    """(column, per-epoch values) of the run's distillation term (train_kl, train_nckd, ...), if any."""
    for name in DISTILL_COMPONENTS:
        series = _epoch_series(ctx, f"train_{name}")
        if series is not None:
            return f"train_{name}", series
    return None


def _val_series(ctx: Context) -> tuple[str, list[float]]:
    metric = "val_loss" if ctx.task == "causal_lm" else "val_acc"
    val = _epoch_series(ctx, metric)
    if val is None:
        raise Skip(f"needs at least 2 epochs of {metric} to see a trend")
    return metric, val


def still_improving(ctx: Context) -> dict:
    """What is still improving fast at the last epoch -> evidence (empty dict: nothing is).

    Raises Skip when the run has fewer than 2 epochs of validation metrics."""
    metric, val = _val_series(ctx)
    ev: dict = {}
    if metric == "val_loss" and _last_change(val) >= LOSS_FALLING:
        ev["val_loss_last_epoch_relative_fall"] = _last_change(val)
    loss = _epoch_series(ctx, "val_loss")
    loss_ok = loss is None or _last_change(loss) >= 0  # accuracy up while the loss rises: overfitting
    if metric == "val_acc" and val[-1] - val[-2] >= ACC_RISING and loss_ok:
        ev["val_acc_last_epoch_rise"] = val[-1] - val[-2]
    term = distill_series(ctx)
    if term is not None and _last_change(term[1]) >= TERM_FALLING:
        ev[f"{term[0]}_last_epoch_relative_fall"] = _last_change(term[1])
    return ev


def longer_runs(ctx: Context) -> list[ProposedRun]:
    """The two fixes of an undertrained run, as runs: LONGER× the epochs; LR_UP× the learning rate."""
    cfg = ctx.config
    epochs, lr = cfg.epochs * LONGER, cfg.lr * LR_UP
    return [
        ProposedRun(f"Train {LONGER}× longer (epochs {epochs})", {"epochs": epochs, "max_steps": None}),
        ProposedRun(f"Raise the learning rate (lr {fmt(lr)})", {"lr": lr}),
    ]


def check_still_improving(ctx: Context) -> Finding | None:
    ev = still_improving(ctx)
    if not ev:
        return None
    metric, val = _val_series(ctx)
    series = {metric: val}
    term = distill_series(ctx)
    if term is not None:
        series[term[0]] = term[1]
    n, m = len(val), min(len(v) for v in series.values())  # m: epochs every series has
    ev.update({"epochs": n, f"first_epoch_{metric}": val[0], f"last_epoch_{metric}": val[-1], "lr": ctx.config.lr})
    fig = FigureData(
        "lines",
        "Still improving at the last epoch",
        list(range(n - m + 1, n + 1)),
        {k: v[-m:] for k, v in series.items()},
        x_title="epoch",
        y_title=metric,
        right=() if term is None else (term[0],),
        right_title="" if term is None else f"{term[0]} (nats)",
    )
    what = (
        "validation loss still falling"
        if "val_loss_last_epoch_relative_fall" in ev
        else (
            "validation accuracy still rising" if "val_acc_last_epoch_rise" in ev else "distillation term still falling"
        )
    )
    runs = longer_runs(ctx)
    return Finding(
        "optim.still_improving",
        "warning",
        f"The run stopped while still improving ({what} fast at epoch {n}): it is undertrained, so "
        f"its final numbers (and any comparison with them) say little yet.",
        ev,
        f"Train longer (epochs {ctx.config.epochs} → {runs[0].changes['epochs']}) or raise the learning "
        f"rate (lr {fmt(ctx.config.lr)} → {fmt(runs[1].changes['lr'])}), then diagnose again.",
        fig,
        runs,
    )
