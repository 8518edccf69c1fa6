"""Views of self-distillation and education runs (methods/13 §13.4, §13.5), from a run's epoch table.

What the views show
-------------------
- **Per-exit accuracy** (Be Your Own Teacher): the validation accuracy of every exit over the
  epochs, exit 1 the shallowest, exit K the student's own head, with the accuracy of the mean of
  the exits' logits. Shallow exits trail the deep one; BYOT's claim is that teaching them also
  helps the deep one (compare its exit K with the student trained alone).
- **Grades over time** (education distillation): which classes are active at each epoch (the grade
  that owns each class, blank before its grade starts) and the validation accuracy per grade. A
  grade's accuracy that drops when the next grade starts is forgetting; the review passes of §13.5
  are there to limit it.
- **Tf-KD's virtual teacher**: the distribution the student is pulled toward, for one label,
  against the one-hot label. At the code's T = 20 it is nearly uniform (§13.4c).

The numbers are kdcore's (the runner's `val_acc_exit*`, `grade`, `val_acc_grade*` columns;
``kdcore.losses.virtual_teacher``); this module only draws them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from analyses._style import CLASS_PALETTE, NEUTRAL, STUDENT, finish, line_trace, panels_in_a_row
from kdcore.losses import virtual_teacher

_EXIT = re.compile(r"^val_acc_exit(\d+)$")
_GRADE = re.compile(r"^val_acc_grade(\d+)$")


def exit_columns(epochs: pd.DataFrame) -> list[str]:
    """The per-exit accuracy columns, shallow -> deep (exit10 after exit9)."""
    found = [(int(m.group(1)), c) for c in epochs.columns if (m := _EXIT.match(str(c)))]
    return [c for _, c in sorted(found)]


def grade_columns(epochs: pd.DataFrame) -> list[str]:
    found = [(int(m.group(1)), c) for c in epochs.columns if (m := _GRADE.match(str(c)))]
    return [c for _, c in sorted(found)]


def exit_accuracy_figure(epochs: pd.DataFrame) -> go.Figure:
    """Validation accuracy of each exit over the epochs (the deepest, the student's own head, in the
    student's colour), and of the exits' mean logits (dashed)."""
    ep = epochs[epochs["epoch"] > 0] if "epoch" in epochs else epochs
    cols = exit_columns(ep)
    if not cols:
        raise ValueError(
            "The run has no per-exit accuracy (columns val_acc_exit1, …): it is not a 'byot' run. "
            "Pick a run of objective byot."
        )
    fig = go.Figure()
    for k, c in enumerate(cols, start=1):
        deepest = k == len(cols)
        name = f"exit {k}" + (" (own head)" if deepest else "")
        colour = STUDENT if deepest else CLASS_PALETTE[(k - 1) % len(CLASS_PALETTE)]
        fig.add_trace(line_trace(ep["epoch"], ep[c], name, colour, mode="lines+markers", width=2.5 if deepest else 1.5))
    if "val_acc_exit_mean" in ep:
        fig.add_trace(
            line_trace(ep["epoch"], ep["val_acc_exit_mean"], "mean of the exits' logits", NEUTRAL, dash="dash")
        )
    fig.update_yaxes(range=[0, 1.02])
    return finish(
        fig, title="Be Your Own Teacher: validation accuracy of each exit", x="epoch", y="accuracy", height=360
    )


def active_classes_matrix(epochs: pd.DataFrame, grades: list[tuple[int, int]]) -> np.ndarray:
    """[C, E]: the grade (1 … G) that owns class c at epoch e when active, NaN before its grade starts."""
    ep = epochs[epochs["epoch"] > 0]
    C = grades[-1][1]
    out = np.full((C, len(ep)), np.nan)
    for j, g in enumerate(ep["grade"].astype(int)):
        for h, (m, n) in enumerate(grades[:g], start=1):
            out[m:n, j] = h
    return out


def grades_figure(epochs: pd.DataFrame, grades: list[tuple[int, int]]) -> go.Figure:
    """Left: which classes are active per epoch, coloured by grade. Right: validation accuracy per grade."""
    if "grade" not in epochs:
        raise ValueError(
            "The run has no 'grade' column: it is not an 'education' run. Pick a run of objective education."
        )
    ep = epochs[epochs["epoch"] > 0]
    fig = panels_in_a_row(("Active classes", "Accuracy per grade"), widths=[0.45, 0.55])
    colours = [CLASS_PALETTE[i % len(CLASS_PALETTE)] for i in range(len(grades))]
    scale = (
        [[i / max(len(grades) - 1, 1), c] for i, c in enumerate(colours)]
        if len(grades) > 1
        else [[0, colours[0]], [1, colours[0]]]
    )
    fig.add_trace(
        go.Heatmap(
            z=active_classes_matrix(epochs, grades),
            x=list(ep["epoch"]),
            y=list(range(grades[-1][1])),
            zmin=1,
            zmax=max(len(grades), 2),
            colorscale=scale,
            showscale=False,
            hovertemplate="epoch %{x}<br>class %{y}<br>grade %{z}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    for h, c in enumerate(grade_columns(ep), start=1):
        name = f"grade {h} (classes {grades[h - 1][0]}–{grades[h - 1][1] - 1})"
        fig.add_trace(line_trace(ep["epoch"], ep[c], name, colours[h - 1], mode="lines+markers"), row=1, col=2)
    if "val_acc" in ep:
        fig.add_trace(line_trace(ep["epoch"], ep["val_acc"], "all classes", "black", dash="dash"), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="class", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    return finish(fig, title="Education distillation: grades over time", height=380)


def virtual_teacher_figure(
    num_classes: int, label: int = 0, *, a: float = 0.99, temperature: float = 20.0, soften: str = "probs"
) -> go.Figure:
    """Tf-KD's virtual teacher for one label (bars) against the one-hot label (markers)."""
    p = virtual_teacher(torch.tensor([label]), num_classes, a=a, temperature=temperature, soften=soften)[0].numpy()
    onehot = np.eye(num_classes)[label]
    fig = go.Figure(
        [
            go.Bar(
                x=list(range(num_classes)),
                y=p,
                name=f"virtual teacher (a = {a:g}, T = {temperature:g})",
                marker_color=STUDENT,
            ),
            go.Scatter(
                x=list(range(num_classes)),
                y=onehot,
                mode="markers",
                name=f"label {label} (one-hot)",
                marker={"color": "black", "symbol": "line-ew-open", "size": 14},
            ),
        ]
    )
    return finish(
        fig,
        title=f"Tf-KD's virtual teacher: its target gets {p[label]:.3f} of {num_classes} classes' mass",
        x="class",
        y="probability",
        height=320,
    )
