"""Capacity gap: the student cannot fit even the teacher's outputs on the training data (the
distillation term plateaus high: it has stopped falling while the run is no longer improving, so an
undertrained run is optim.still_improving, not this), or distilling did not beat the student trained
alone with the same budget (epochs, training size, lr, seed, ...).
Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher Assistant", arXiv 1902.03393;
Cho & Hariharan 2019, "On the Efficacy of Knowledge Distillation", arXiv 1910.01348."""

from __future__ import annotations

from typing import Any

from kdcore.doctor.context import DISTILL_COMPONENTS, Context, Skip, fmt
from kdcore.doctor.findings import ALONE, FigureData, Finding, ProposedRun
from kdcore.doctor.progress import still_improving
from kdcore.doctor.streams import nll_accuracy
from kdcore.metrics import accuracy, agreement

PLATEAU_REL = 0.05  # the last epoch moved the distillation term by less than 5 %: a plateau
HIGH_SHARE = 0.5  # ... and it still holds at least half of its value at the first step
MIN_EPOCHS = 3
# Where the gain at each student size is measured (kdcore/jobs/capacity_study.py; the Experiments page).
CAPACITY_STUDY = (
    "The capacity-gap study measures the gain of KD at every student size of the ladder and several "
    "temperatures: `python -m kdcore experiment capacity --pair {pair}` (or the Experiments page, "
    "Capacity gap tab)."
)
NO_GAIN = 0.005  # distilled accuracy (or loss, relative) within this of the baseline: no gain
# The budget a like-for-like student-alone run shares with the distilled one.
BUDGET = (
    "epochs",
    "max_steps",
    "train_size",
    "batch_size",
    "lr",
    "schedule",
    "warmup_steps",
    "optimizer",
    "weight_decay",
    "seed",
)


def same_budget(a: dict, b: dict) -> bool:
    """True when two run configs (dicts, as stored) train with the same budget (BUDGET's fields)."""
    defaults = _defaults()
    return all(a.get(k, defaults[k]) == b.get(k, defaults[k]) for k in BUDGET)


def _defaults() -> dict:
    from kdcore.jobs.config import JobConfig

    return JobConfig().to_dict()


def _distill_series(ctx: Context) -> tuple[str, list[float], float | None]:
    """(component, per-epoch training means, value at the first step) of the distillation term."""
    df = ctx.require_metrics("epoch")
    for name in DISTILL_COMPONENTS:
        col = f"train_{name}"
        if col in df.columns and df[col].notna().sum() >= 1:
            series = df.loc[df[col].notna(), col].tolist()
            first = ctx.metric("step", name)
            return name, series, (float(first.iloc[0]) if first is not None else None)
    raise Skip("the run recorded no distillation term per epoch (train_kl, train_nckd, train_fkl, ...)")


def check_kl_plateau(ctx: Context) -> Finding | None:
    name, series, first = _distill_series(ctx)
    if len(series) < MIN_EPOCHS:
        raise Skip(f"needs at least {MIN_EPOCHS} epochs to see a plateau; the run has {len(series)}")
    start = first if first is not None and first > 0 else series[0]
    last, prev = series[-1], series[-2]
    change = abs(prev - last) / max(abs(prev), 1e-12)
    kept = last / start if start > 0 else 0.0
    if change >= PLATEAU_REL or kept < HIGH_SHARE or _improving(ctx):
        return None
    ev = {
        "component": name,
        "first_step_value": start,
        "last_epoch_value": last,
        "share_left": kept,
        "last_epoch_relative_change": change,
        "epochs": len(series),
    }
    if ctx.student is not None and ctx.teacher is not None and ctx.dataset is not None and ctx.task != "causal_lm":
        s, t = ctx.logits("student", "train"), ctx.logits("teacher", "train")
        ev["train_agreement_with_teacher"] = agreement(s, t, task=ctx.task)
    if ctx.student is not None and ctx.teacher is not None:
        ev["student_to_teacher_params"] = ctx.student.num_parameters() / max(ctx.teacher.num_parameters(), 1)
    fig = FigureData(
        "lines",
        f"Distillation term ({name}) per epoch",
        list(range(1, len(series) + 1)),
        {f"train {name}": series},
        x_title="epoch",
        y_title=name,
    )
    return Finding(
        "capacity.kl_plateau",
        "warning",
        f"The student cannot fit the teacher's outputs even on the training data: the {name} term "
        f"stopped falling at {fmt(100 * kept, 3)} % of its starting value.",
        ev,
        "Use a larger student (or an intermediate 'teacher assistant' between the two, Mirzadeh et al. "
        "2020), or distil from an earlier, less sharp teacher checkpoint; a lower temperature also asks "
        "less of a small student. " + CAPACITY_STUDY.format(pair=ctx.config.pair),
        fig,
    )


def _improving(ctx: Context) -> bool:
    """True when the run is still improving fast at its last epoch (undertrained, not a plateau)."""
    try:
        return bool(still_improving(ctx))
    except Skip:
        return False


def _val_score(ctx: Context, who: str) -> float:
    if ctx.task == "causal_lm":
        return nll_accuracy(ctx, who, "val")[0]  # streamed over the probe's rows
    x, y = ctx.val_probe
    rows, labels = ctx.flat(ctx.logits(who, "val"), y)
    return accuracy(rows, labels, task=ctx.task)


def _baseline(ctx: Context, key: str) -> dict | None:
    """The record's student-alone run when it has this run's budget (a baseline given without its
    config is taken as like-for-like: whoever built the record vouches for it)."""
    base = ctx.record.baseline
    if base is None or base.get(key) is None:
        return None
    if base.get("config") is not None and not same_budget(ctx.record.config or {}, base["config"]):
        return None
    return base


def queue_alone(ctx: Context) -> ProposedRun:
    """The fix 'train the student alone with this run's budget' as a run to queue."""
    return ProposedRun(
        f"Student alone, same budget (epochs {ctx.config.epochs}, lr {fmt(ctx.config.lr)}, seed {ctx.config.seed})",
        dict(ALONE),
    )


def _no_baseline(ctx: Context, what: str, distilled: float) -> Finding:
    ev = {
        "distilled_" + ("val_loss" if ctx.task == "causal_lm" else "val_acc"): distilled,
        "baseline": "none with this run's budget",
    }
    for k in ("epochs", "train_size", "lr", "seed"):
        ev[k] = getattr(ctx.config, k)
    if ctx.student_baseline is not None and ctx.student is not None and ctx.dataset is not None:
        ev["pair_baseline_student_" + ("val_loss" if ctx.task == "causal_lm" else "val_acc")] = _val_score(
            ctx, "student_baseline"
        )  # context only: trained with its own budget
    return Finding(
        "capacity.no_gain",
        "info",
        f"No student-alone run with this run's budget exists, so whether distilling helped is not "
        f"known yet (the distilled student's {what}: {fmt(distilled, 4)}).",
        ev,
        "For a like-for-like comparison, train the student alone with this run's settings "
        "(`--objective ce`, same epochs, training size, lr and seed) and run the doctor again.",
        None,
        [queue_alone(ctx)],
    )


def check_no_gain(ctx: Context) -> Finding | None:
    if not ctx.terms or all(t.name in ("ce", "ls") for t in ctx.terms):
        raise Skip("the run did not distil (objective ce or ls)")
    lm = ctx.task == "causal_lm"
    key = "final_val_loss" if lm else "final_val_acc"
    what = "validation loss" if lm else "validation accuracy"
    summary = ctx.record.summary or {}
    if summary.get(key) is None:
        raise Skip(f"the run recorded no {key} (it did not finish an epoch)")
    distilled = float(summary[key])
    base = _baseline(ctx, key)
    if base is None:
        return _no_baseline(ctx, what, distilled)
    alone = float(base[key])
    gain = (alone - distilled) / max(abs(alone), 1e-12) if lm else distilled - alone
    if gain > NO_GAIN:
        return None
    ev: dict[str, Any] = {
        "distilled_" + ("val_loss" if lm else "val_acc"): distilled,
        "student_alone_" + ("val_loss" if lm else "val_acc"): alone,
        "gain": gain,
        "baseline": f"run {base.get('run_id', '?')}",
    }
    teacher = None if lm or summary.get("teacher_val_acc") is None else float(summary["teacher_val_acc"])
    bars = {"distilled student": [distilled], "student alone": [alone]}
    if teacher is not None:
        ev["teacher_val_acc"] = teacher
        bars["teacher"] = [teacher]
    fig = FigureData("bars", f"{what.capitalize()}: distilled vs alone (same budget)", [what], bars, y_title=what)
    if teacher is not None and teacher <= alone + NO_GAIN:
        fix = "The teacher is no better than the student alone, so it has nothing to teach: use a stronger teacher."
    else:
        fix = (
            "Tune the temperature and the KD weight on this pair (`python -m kdcore protocol --pair ... "
            "--temperatures 1,2,4,8 --lams 0.5,0.9`); if no setting helps, the student is too small to use "
            "the teacher's knowledge (see capacity.kl_plateau). If optim.still_improving fired, train both "
            "longer first. " + CAPACITY_STUDY.format(pair=ctx.config.pair)
        )
    return Finding(
        "capacity.no_gain",
        "warning",
        f"Distillation did not help: with the same budget, the student alone reaches a {what} of "
        f"{fmt(alone, 4)}, the distilled one {fmt(distilled, 4)}.",
        ev,
        fix,
        fig,
    )
