"""Views of on-policy runs of causal LMs (methods/15 §15.3–15.5: GKD, MiniLLM, DistiLLM).

What the view shows
-------------------
- **On-policy share** (top): the share of training steps so far whose completions the student
  sampled itself (`onpolicy_share`), with each step's source as a mark (student samples, teacher
  samples, replayed student samples, data). GKD's share settles near λ; MiniLLM's is 1; DistiLLM's
  stays 0 while the validation loss falls and rises with φ (drawn when logged, `distillm_phi`).
- **Quality** (bottom): the student's validation loss (next-token CE on held-out data) at each
  evaluation, the student before training at epoch 0, with the teacher's as a dashed line.

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
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14, subplot_titles=("on-policy share", "quality"))
    st = steps.sort_values("step")
    fig.add_trace(_line(st["step"], st["onpolicy_share"], "share of student-sampled steps", STUDENT), row=1, col=1)
    for col, (label, y, colour) in SOURCES.items():
        if col in st:
            hit = st[st[col].fillna(0) > 0]
            marker = {"color": colour, "size": 5, "symbol": "line-ns-open"}
            fig.add_trace(
                go.Scatter(x=hit["step"], y=[y] * len(hit), mode="markers", name=label, marker=marker), row=1, col=1
            )
    _quality(fig, epochs)
    fig.update_yaxes(title_text="share", range=[-0.05, 1.05], row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="validation loss (CE)", row=2, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    return finish(fig, title="On-policy share and quality", height=560)


def _line(x: pd.Series, y: pd.Series, name: str, colour: str, dash: str | None = None) -> go.Scatter:
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, line={"color": colour, "dash": dash})


def _quality(fig: go.Figure, epochs: pd.DataFrame) -> None:
    if not len(epochs) or "val_loss" not in epochs:
        return
    ep = epochs[epochs["val_loss"].notna()].sort_values("epoch")
    fig.add_trace(_line(ep["epoch"], ep["val_loss"], "student validation loss", STUDENT), row=2, col=1)
    if "teacher_val_loss" in epochs and epochs["teacher_val_loss"].notna().any():
        t = float(epochs["teacher_val_loss"].dropna().iloc[0])
        x = [ep["epoch"].min(), ep["epoch"].max()]
        fig.add_trace(_line(pd.Series(x), pd.Series([t, t]), "teacher", TEACHER, dash="dash"), row=2, col=1)
    if "distillm_phi" in epochs and "step" in epochs and epochs["distillm_phi"].notna().any():
        ph = epochs[epochs["distillm_phi"].notna()].sort_values("step")  # φ after each evaluation, by step
        fig.add_trace(_line(ph["step"], ph["distillm_phi"], "DistiLLM φ", NEUTRAL, "dot"), row=1, col=1)
