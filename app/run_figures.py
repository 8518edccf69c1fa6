"""Figures of a distillation run from the run store's metric tables (no Streamlit: the report uses them too).

Step metrics: `loss` and one column per loss component, plus `lr` and the scheduled or learned values
`sched_*` (temperature, λ, term weights, CTKD's λ_e, a curriculum's pool). Epoch metrics: `train_*`,
`val_loss`, `val_acc`, `val_agreement`. Checkpoint metrics: `cka/<student>|<teacher>` and `div/<part>`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses._style import NEUTRAL, STUDENT, TEACHER, class_colour, finish, line_trace, panels_in_a_row

_NOT_LOSS = {"step", "epoch", "lr", "teacher_logits_grad", "nonfinite_loss"}
SCHED = "sched_"  # step metrics of scheduled or learned values (kdcore.jobs.schedules.step_metrics)
_SCHED_NAMES = {"ctkd_lambda": "CTKD λ_e (reversal scale)", "pool": "curriculum pool (samples)"}


def is_loss_column(c: str) -> bool:
    """A step-metric column that is the loss or one of its components."""
    return c not in _NOT_LOSS and not str(c).startswith(SCHED)


def loss_components(steps: pd.DataFrame, *, smooth: int = 1) -> go.Figure:
    """Every loss component against the step (the total in black), optionally as a rolling mean."""
    fig = go.Figure()
    cols = [c for c in steps.columns if is_loss_column(c)]
    for i, c in enumerate(cols):
        y = steps[c].rolling(smooth, min_periods=1).mean() if smooth > 1 else steps[c]
        colour = "black" if c == "loss" else class_colour(i)
        fig.add_trace(line_trace(steps["step"], y, c, colour, width=2.5 if c == "loss" else 1.5))
    whole_number_ticks(fig, steps["step"].max() if len(steps) else 0)  # a run just started: no step 1.5
    return finish(fig, title="Training loss and its components", x="step", y="loss (nats)", height=360)


def whole_number_ticks(fig: go.Figure, largest: float, *, every_one_up_to: int = 12) -> None:
    """x ticks at whole numbers (epochs, steps): one per number up to `every_one_up_to`, beyond that
    plotly's own spacing, still whole (a label per epoch of a 50-epoch run would overlap in a panel)."""
    if largest <= every_one_up_to:
        fig.update_xaxes(dtick=1)
    else:
        fig.update_xaxes(tickformat="d")


def _add_epoch_line(fig: go.Figure, ep: pd.DataFrame, c: str, colour: str, dash: str | None, *, col: int) -> None:
    """Column `c` of the epoch table against the epoch, in panel (1, col); nothing when the column is missing."""
    if c in ep:
        trace = line_trace(ep["epoch"], ep[c], c.replace("_", " "), colour, mode="lines+markers", dash=dash)
        fig.add_trace(trace, row=1, col=col)


def epoch_metrics(epochs: pd.DataFrame, *, teacher_acc: float | None = None) -> go.Figure:
    """Validation accuracy and agreement with the teacher (left); validation loss (middle) and the
    training objective (right) on axes of their own: a KD objective (T²·KL) and the validation
    cross-entropy are on different scales."""
    ep = epochs[epochs["epoch"] > 0] if "epoch" in epochs else epochs
    fig = panels_in_a_row(("accuracy and agreement", "validation loss (CE)", "training objective"), spacing=0.09)
    for c, colour, dash in (("val_acc", STUDENT, None), ("val_agreement", TEACHER, "dot")):
        _add_epoch_line(fig, ep, c, colour, dash, col=1)
    if teacher_acc is not None:
        fig.add_hline(
            y=teacher_acc,
            line={"color": TEACHER, "dash": "dash", "width": 1},
            row=1,
            col=1,
            annotation_text="teacher accuracy",
            annotation_position="bottom right",
        )
    for col, (c, colour, dash) in enumerate((("val_loss", STUDENT, None), ("train_loss", NEUTRAL, "dot")), start=2):
        _add_epoch_line(fig, ep, c, colour, dash, col=col)
    fig.update_xaxes(title_text="epoch")
    whole_number_ticks(fig, ep["epoch"].max() if len(ep) else 0)
    fig.update_yaxes(title_text="share of samples", range=[0, 1.06], row=1, col=1)  # "1" below the panel title
    fig.update_yaxes(title_text="cross-entropy (nats)", row=1, col=2)
    fig.update_yaxes(title_text="objective (nats)", row=1, col=3)
    return finish(fig, title="Validation after each epoch", height=360)


def checkpoint_divergences(ckpt: pd.DataFrame) -> go.Figure:
    """The divergence components between student and teacher on the probe batch, per checkpoint."""
    fig = go.Figure()
    cols = [c for c in ckpt.columns if str(c).startswith("div/")]
    for i, c in enumerate(cols):
        fig.add_trace(line_trace(ckpt["epoch"], ckpt[c], c[4:], class_colour(i), mode="lines+markers"))
    whole_number_ticks(fig, ckpt["epoch"].max() if len(ckpt) else 0)
    return finish(fig, title="Divergence components at checkpoints (probe batch)", x="epoch", y="nats", height=340)


def compare_curves(curves: dict[str, pd.DataFrame], metric: str) -> go.Figure:
    """One line per run of an epoch metric (runs overlaid)."""
    fig = go.Figure()
    for i, (label, ep) in enumerate(curves.items()):
        if metric in ep:
            ep = ep[ep["epoch"] > 0]
            fig.add_trace(line_trace(ep["epoch"], ep[metric], label, class_colour(i), mode="lines+markers"))
    whole_number_ticks(fig, max((float(ep["epoch"].max()) for ep in curves.values() if len(ep)), default=0))
    return finish(
        fig,
        title=f"{metric.replace('_', ' ')} by epoch, runs compared",
        x="epoch",
        y=metric.replace("_", " "),
        height=360,
    )


def schedule_frame(schedules: dict, total_steps: int, steps_per_epoch: int, epochs: int) -> pd.DataFrame:
    """The `sched_*` columns a run with these (valid) schedules will log, at ≤ 2000 of its steps."""
    from kdcore.jobs.schedules import scheduled_values

    steps = np.unique(np.linspace(0, max(total_steps - 1, 0), min(total_steps, 2000)).round().astype(int))
    rows = []
    for t in steps.tolist():
        values = scheduled_values(schedules, t, t // max(steps_per_epoch, 1) + 1, total_steps, epochs)
        rows.append({"step": t, **{SCHED + k: v for k, v in values.items()}})
    return pd.DataFrame(rows)


def scheduled_values(steps: pd.DataFrame, *, title: str = "Scheduled and learned values") -> go.Figure | None:
    """One panel per `sched_*` column against the step (the learned or scheduled temperature, λ, term
    weights, CTKD's λ_e, a curriculum's pool size); None when the frame has none."""
    cols = [c for c in steps.columns if str(c).startswith(SCHED)]
    if not cols:
        return None
    names = [_SCHED_NAMES.get(c[len(SCHED) :], c[len(SCHED) :]) for c in cols]
    fig = make_subplots(rows=len(cols), cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=names)
    for i, (c, name) in enumerate(zip(cols, names)):
        fig.add_trace(line_trace(steps["step"], steps[c], name, class_colour(i), width=2), row=i + 1, col=1)
    fig.update_xaxes(title_text="step", row=len(cols), col=1)
    return finish(fig, title=title, height=200 + 140 * len(cols))
