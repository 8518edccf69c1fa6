"""Weight distillation's mechanism (methods/14 §14.2), as pure plotly figures over what a run recorded:

- `wd_accuracy_figure`: the student's validation accuracy per epoch, phase 1 (the network running
  with the weights generated from the teacher's) against phase 2 (the plain student, started from
  the materialised weights), the teacher's as a line;
- `wd_mix_figure`: the generator's mixing weights c = Λω of every group (one bar per teacher tensor
  of the group; a group of one tensor has c = 1), with the groups' teacher modules in the labels.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analyses._style import NEUTRAL, STUDENT, TEACHER, finish
from kdcore.validation import InvalidParameterError

PHASES = {1: ("phase 1: generated weights", TEACHER), 2: ("phase 2: plain student", STUDENT)}


def _epochs(epochs: Any) -> pd.DataFrame:
    if not isinstance(epochs, pd.DataFrame) or not {"epoch", "val_acc", "wd_phase"} <= set(epochs.columns):
        got = list(epochs.columns) if isinstance(epochs, pd.DataFrame) else type(epochs).__name__
        raise InvalidParameterError(
            "The 'epochs' argument must be a weight_distill run's epoch metrics (RunStore.metrics(run_id, 'epoch'), "
            f"with columns epoch, val_acc and wd_phase). Got {got}."
        )
    return epochs[epochs["wd_phase"].notna()].sort_values("epoch")


def wd_accuracy_figure(epochs: pd.DataFrame, teacher_acc: float | None = None) -> go.Figure:
    """Validation accuracy per epoch, one trace per phase (a band marks phase 1)."""
    ep = _epochs(epochs)
    fig = go.Figure()
    for phase, (name, colour) in PHASES.items():
        rows = ep[ep["wd_phase"] == phase]
        if not len(rows):
            continue
        if phase == 1:
            fig.add_vrect(x0=rows["epoch"].min() - 0.5, x1=rows["epoch"].max() + 0.5, fillcolor=TEACHER, opacity=0.06,
                          line_width=0, annotation_text="generated", annotation_position="top left")  # fmt: skip
        fig.add_trace(go.Scatter(x=rows["epoch"], y=rows["val_acc"], mode="lines+markers", name=name,
                                 line={"color": colour},
                                 hovertemplate=f"{name}<br>epoch %{{x}}<br>val acc %{{y:.2%}}<extra></extra>"))  # fmt: skip
    if teacher_acc is not None:
        fig.add_hline(y=teacher_acc, line_dash="dash", line_color=NEUTRAL, annotation_text="teacher")
    fig.update_yaxes(tickformat=".0%")
    return finish(fig, title="Weight distillation: phase 1 (generated weights) vs phase 2 (plain student)",
                  x="epoch", y="validation accuracy")  # fmt: skip


def _label(tensor: str, groups: dict) -> str:
    """ "conv2.0.weight ← conv3" (the teacher modules of the group whose student module holds the tensor)."""
    owner = max((g for g in groups if tensor.startswith(f"{g}.")), key=len, default=None)
    return f"{tensor} ← {'+'.join(groups[owner])}" if owner is not None else tensor


def wd_mix_figure(summary: dict) -> go.Figure:
    """c = Λω of every generated weight tensor at the phase switch: bar j is teacher tensor j's weight."""
    wd = summary.get("weight_distill") if isinstance(summary, dict) else None
    if not isinstance(wd, dict) or not isinstance(wd.get("mix"), dict) or not wd["mix"]:
        raise InvalidParameterError(
            "The 'summary' must be a weight_distill run's summary (with 'weight_distill': {'mix': {tensor: c}})."
        )
    groups = wd.get("groups") or {}
    k = max(len(c) for c in wd["mix"].values())
    names = list(wd["mix"])
    labels = [_label(n, groups) for n in names]
    fig = go.Figure()
    for j in range(k):
        ys = [c[j] if j < len(c) else None for c in wd["mix"].values()]
        fig.add_trace(go.Bar(x=labels, y=ys, name=f"teacher tensor {j + 1}",
                             hovertemplate=f"%{{x}}<br>c_{j + 1} = %{{y:.4f}}<extra></extra>"))  # fmt: skip
    note = " (every group has one teacher tensor: c = 1)" if k == 1 else ""
    fig.update_layout(barmode="group")
    return finish(fig, title=f"Weight distillation: the generator's mixing weights c = Λω per group{note}",
                  x="student tensor ← teacher modules", y="c")  # fmt: skip
