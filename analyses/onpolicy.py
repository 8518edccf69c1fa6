"""Views of on-policy runs of causal LMs (methods/15 §15.3–15.5: GKD, MiniLLM, DistiLLM).

What the view shows
-------------------
- **On-policy share** (top): the share of training steps so far whose completions the student
  sampled itself (`onpolicy_share`), with each step's source as a mark (student samples, teacher
  samples, replayed student samples, data). GKD's share settles near λ; MiniLLM's is 1; DistiLLM's
  stays 0 while the validation loss falls and rises with φ (drawn when logged, `distillm_phi`).
- **Exact match** (middle, when the run logged it: `heldout_em`, kdcore.jobs.heldout): the share (%)
  of held-out prompts whose greedy completion equals the reference (tinylang: the copy task's test
  prompts), at each evaluation, the student before training at epoch 0; the teacher's as a dashed line.
- **Validation loss** (bottom): the student's next-token CE on held-out data at each evaluation, with
  the teacher's as a dashed line.

`sequence_figure` draws the last two for sequence-level runs (seqkd, hybrid), which sample nothing
per step (the teacher's completions are generated once before training).

The numbers are the runner's (kdcore/jobs/onpolicy_job.py); this module only draws them.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses._style import NEUTRAL, STUDENT, TEACHER, finish

SOURCES = {  # source column -> (label, y of its mark, colour)
    "source_student": ("student samples", 1.0, STUDENT),
    "source_generate": ("student samples", 1.0, STUDENT),
    "source_replay": ("replayed student samples", 0.5, "#b35806"),
    "source_teacher": ("teacher samples", 0.0, TEACHER),
    "source_data": ("data", 0.0, NEUTRAL),
}


def onpolicy_figure(steps: pd.DataFrame, epochs: pd.DataFrame) -> go.Figure:
    """The on-policy share over the steps and the validation loss over the evaluations (module docstring)."""
    if "onpolicy_share" not in steps:
        raise ValueError(
            "The run has no on-policy share (column onpolicy_share): it is not a gkd, minillm or distillm run. "
            "Pick a run of one of those objectives."
        )
    em = _has_em(epochs)
    titles = ("on-policy share", *(["quality: held-out exact match"] if em else []), "quality: validation loss")
    fig = make_subplots(rows=len(titles), cols=1, vertical_spacing=0.1, subplot_titles=titles)
    st = steps.sort_values("step")
    fig.add_trace(_line(st["step"], st["onpolicy_share"], "share of student-sampled steps", STUDENT), row=1, col=1)
    for col, (label, y, colour) in SOURCES.items():
        if col in st:
            hit = st[st[col].fillna(0) > 0]
            marker = {"color": colour, "size": 5, "symbol": "line-ns-open"}
            fig.add_trace(
                go.Scatter(x=hit["step"], y=[y] * len(hit), mode="markers", name=label, marker=marker), row=1, col=1
            )
    _quality(fig, epochs, first_row=2)
    _phi(fig, epochs)
    fig.update_yaxes(title_text="share", range=[-0.05, 1.05], row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=1)
    return finish(fig, title="On-policy share and quality", height=300 + 230 * (len(titles) - 1))


def sequence_figure(epochs: pd.DataFrame) -> go.Figure:
    """Quality of a sequence-level run (seqkd, hybrid) over the epochs: held-out exact match (when
    logged) and validation loss, the teacher's as dashed lines."""
    if "val_loss" not in epochs:
        raise ValueError("The run logged no validation loss (column val_loss): it has not evaluated yet.")
    titles = (*(["held-out exact match"] if _has_em(epochs) else []), "validation loss")
    fig = make_subplots(rows=len(titles), cols=1, vertical_spacing=0.16, subplot_titles=titles)
    _quality(fig, epochs, first_row=1)
    return finish(fig, title="Quality over the epochs", height=200 + 230 * len(titles))


def _has_em(epochs: pd.DataFrame) -> bool:
    return "heldout_em" in epochs and bool(epochs["heldout_em"].notna().any())


def _line(x: pd.Series, y: pd.Series, name: str, colour: str, dash: str | None = None) -> go.Scatter:
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, line={"color": colour, "dash": dash})


def _teacher_line(fig: go.Figure, epochs: pd.DataFrame, ep: pd.DataFrame, column: str, row: int) -> None:
    if column in epochs and epochs[column].notna().any():
        t = float(epochs[column].dropna().iloc[0])
        x = [ep["epoch"].min(), ep["epoch"].max()]
        trace = _line(pd.Series(x), pd.Series([t, t]), "teacher", TEACHER, dash="dash")
        trace.update(legendgroup="teacher", showlegend=row == 2 or not _has_em(epochs))
        fig.add_trace(trace, row=row, col=1)


def _quality(fig: go.Figure, epochs: pd.DataFrame, *, first_row: int) -> None:
    """Exact match (when logged) then validation loss over the epochs, from `first_row` down."""
    if not len(epochs) or "val_loss" not in epochs:
        return
    row = first_row
    if _has_em(epochs):
        em = epochs[epochs["heldout_em"].notna()].sort_values("epoch")
        fig.add_trace(_line(em["epoch"], em["heldout_em"], "student exact match", STUDENT), row=row, col=1)
        _teacher_line(fig, epochs, em, "teacher_heldout_em", row)
        fig.update_yaxes(title_text="exact match (%)", rangemode="tozero", row=row, col=1)
        fig.update_xaxes(title_text="epoch", row=row, col=1)
        row += 1
    ep = epochs[epochs["val_loss"].notna()].sort_values("epoch")
    fig.add_trace(_line(ep["epoch"], ep["val_loss"], "student validation loss", STUDENT), row=row, col=1)
    _teacher_line(fig, epochs, ep, "teacher_val_loss", row)
    fig.update_yaxes(title_text="validation loss (CE, nats)", row=row, col=1)
    fig.update_xaxes(title_text="epoch", row=row, col=1)


def _phi(fig: go.Figure, epochs: pd.DataFrame) -> None:
    if "distillm_phi" in epochs and "step" in epochs and epochs["distillm_phi"].notna().any():
        ph = epochs[epochs["distillm_phi"].notna()].sort_values("step")  # φ after each evaluation, by step
        fig.add_trace(_line(ph["step"], ph["distillm_phi"], "DistiLLM φ", NEUTRAL, "dot"), row=1, col=1)
