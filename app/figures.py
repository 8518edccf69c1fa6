"""Small figures the pages draw from cached results (no Streamlit here)."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from analyses._style import NEUTRAL, STUDENT, TEACHER, finish


def probabilities_at(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    temperature: float,
    *,
    class_names: list[str] | None = None,
    top: int = 20,
) -> go.Figure:
    """Teacher and student probabilities softmax(z / T) of one input, as grouped bars (the teacher's top classes)."""
    p = torch.softmax(teacher_logits.double() / temperature, -1)  # [C]
    q = torch.softmax(student_logits.double() / temperature, -1)  # [C]
    order = torch.argsort(p, descending=True, stable=True)[:top].tolist()
    names = [class_names[i] if class_names and i < len(class_names) else str(i) for i in order]
    fig = go.Figure(
        [
            go.Bar(x=names, y=p[order].tolist(), name="teacher", marker_color=TEACHER),
            go.Bar(x=names, y=q[order].tolist(), name="student", marker_color=STUDENT),
        ]
    )
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1])
    return finish(
        fig,
        title=f"Soft labels of one input at T = {temperature:g}",
        x="class (teacher's ranking)",
        y="probability",
        height=360,
    )


def kd_terms(ce: float | None, kl_term: float, lam: float) -> go.Figure:
    """The two terms of the KD loss at the chosen T and λ, weighted, stacked to the total."""
    fig = go.Figure()
    if ce is not None:
        fig.add_trace(go.Bar(x=["KD loss"], y=[(1 - lam) * ce], name="(1 − λ)·CE(y, q)", marker_color=NEUTRAL))
    fig.add_trace(
        go.Bar(
            x=["KD loss"],
            y=[(lam if ce is not None else 1.0) * kl_term],
            name="λ·T²·KL(p_T ‖ q_T)",
            marker_color=STUDENT,
        )
    )
    fig.update_layout(barmode="stack")
    return finish(fig, title="The KD loss on the probe inputs, term by term", x="", y="loss (nats)", height=360)


def mark_x(fig: go.Figure, x: float) -> go.Figure:
    """A dashed vertical line at x in every panel of the figure."""
    where = {"row": "all", "col": "all"} if getattr(fig, "_grid_ref", None) else {}
    fig.add_vline(x=x, line={"color": "#444", "dash": "dash", "width": 1}, **where)
    return fig
