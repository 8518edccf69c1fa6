"""Overfitting to the teacher: the student matches the teacher ever better on its training data (the
distillation term keeps falling) while what it learns stops carrying over to unseen data (the gap
between training and validation accuracy keeps growing). The survey's first failure signature; more
data or augmentation, a lower λ (the labels weigh more) or stopping earlier are the usual fixes.

Judged from the per-epoch `train_acc` (the runner scores a fixed subset of the training samples at
each epoch end, in eval mode), `val_acc` and the distillation term: from the epoch where the gap was
smallest to the last epoch, the gap grew by at least GAP_RISE, ends at least GAP_MIN, and the
distillation term fell by at least TERM_FALL of its value there.
"""

from __future__ import annotations

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding, ProposedRun
from kdcore.doctor.progress import distill_series

GAP_RISE = 0.05  # the train − validation accuracy gap grew by ≥ 5 points ...
GAP_MIN = 0.10  # ... and is ≥ 10 points at the last epoch
TERM_FALL = 0.05  # while the distillation term fell by ≥ 5 % over the same epochs
MIN_EPOCHS = 3
MORE_DATA = 4  # "more data": this many times the training subset


def _series(ctx: Context, column: str) -> list[float] | None:
    df = ctx.record.epochs
    if df is None or column not in df.columns or "epoch" not in df.columns:
        return None
    rows = df[(df["epoch"] >= 1) & df[column].notna()]
    return [float(v) for v in rows[column]]


def _evidence_series(ctx: Context) -> tuple[list[float], list[float], str, list[float]]:
    """(train_acc, val_acc, the distillation term's column, its values), per epoch, the same length."""
    term = distill_series(ctx)
    if term is None:
        raise Skip("the run recorded no distillation term per epoch (it did not distil)")
    train, val = _series(ctx, "train_acc"), _series(ctx, "val_acc")
    if not train or not val:
        raise Skip("the run recorded no train_acc per epoch (runs trained before it was logged)")
    n = min(len(train), len(val), len(term[1]))
    if n < MIN_EPOCHS:
        raise Skip(f"needs at least {MIN_EPOCHS} epochs of train_acc and val_acc; the run has {n}")
    return train[-n:], val[-n:], term[0], term[1][-n:]


def overfit_evidence(ctx: Context) -> dict:
    """The numbers the check judges: the gap's smallest epoch and its rise since, the term's fall
    (empty dict: the run is not overfitting to the teacher). Raises Skip when the series are missing."""
    train, val, name, term = _evidence_series(ctx)
    gap = [t - v for t, v in zip(train, val)]
    lo = min(range(len(gap) - 1), key=lambda i: gap[i])  # the smallest gap before the last epoch
    rise = gap[-1] - gap[lo]
    fall = (term[lo] - term[-1]) / max(abs(term[lo]), 1e-12)
    if rise < GAP_RISE or gap[-1] < GAP_MIN or fall < TERM_FALL:
        return {}
    best = max(range(len(val)), key=lambda i: val[i])
    return {
        "epochs": len(gap),
        "gap_smallest_epoch": lo + 1,
        "gap_then": gap[lo],
        "gap_last": gap[-1],
        "gap_rise": rise,
        "train_acc_last": train[-1],
        "val_acc_last": val[-1],
        "val_acc_best": val[best],
        "val_best_epoch": best + 1,
        "term": name,
        "term_relative_fall": fall,
        "lam": ctx.config.lam,
        "train_size": ctx.config.train_size,
    }


def _lam(ctx: Context) -> float | None:
    """The run's λ (0.9 when KD ran with its default), or None when its objective has no λ."""
    if ctx.config.lam is not None:
        return float(ctx.config.lam)
    return 0.9 if any(t.name == "kd" for t in ctx.terms) else None


def _runs(ctx: Context, best_epoch: int) -> list[ProposedRun]:
    cfg, lam = ctx.config, _lam(ctx)
    runs = [] if lam is None else [ProposedRun(f"Lower λ (lam {fmt(lam / 2)})", {"lam": lam / 2})]
    if cfg.train_size is not None:
        more = cfg.train_size * MORE_DATA
        runs.insert(0, ProposedRun(f"More training data (train_size {more})", {"train_size": more}))
    if best_epoch < cfg.epochs:
        runs.append(ProposedRun(f"Stop earlier (epochs {best_epoch})", {"epochs": best_epoch, "max_steps": None}))
    return runs


def check_teacher_overfit(ctx: Context) -> Finding | None:
    ev = overfit_evidence(ctx)
    if not ev:
        return None
    train, val, name, term = _evidence_series(ctx)
    n = len(train)
    series = {"train accuracy": train, "validation accuracy": val}
    agree = _series(ctx, "train_agreement")
    if agree and len(agree) >= n:
        series["training agreement with the teacher"] = agree[-n:]
    series[name] = term
    fig = FigureData(
        "lines",
        "Training vs validation accuracy, and the distillation term",
        list(range(ev["epochs"] - n + 1, ev["epochs"] + 1)),
        series,
        x_title="epoch",
        y_title="accuracy",
        right=(name,),
        right_title=f"{name} (nats)",
    )
    more = (
        f"train_size {ctx.config.train_size} → {ctx.config.train_size * MORE_DATA}, " if ctx.config.train_size else ""
    )
    lam = _lam(ctx)
    lower = f"lower λ so the labels weigh more (λ {fmt(lam)} → {fmt(lam / 2)}), " if lam is not None else ""
    return Finding(
        "overfit.teacher",
        "warning",
        f"The student is overfitting to the teacher: from epoch {ev['gap_smallest_epoch']} the gap between "
        f"training and validation accuracy grew from {fmt(ev['gap_then'])} to {fmt(ev['gap_last'])} while the "
        f"{name} term fell {fmt(100 * ev['term_relative_fall'])} %.",
        ev,
        f"Give the student more data or augmentation ({more}or augmented inputs), {lower}or stop earlier "
        f"(validation peaked at epoch {ev['val_best_epoch']} of {ev['epochs']}).",
        fig,
        _runs(ctx, ev["val_best_epoch"]),
    )
