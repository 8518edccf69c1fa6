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
    token_names: dict[int, str] | None = None,
    top: int = 20,
) -> go.Figure:
    """Teacher and student probabilities softmax(z / T) of one input, as grouped bars: the teacher's top
    classes, then one "the rest" bar with the exact mass of every other class (when there are more than top).
    Classes are named by class_names, else by token_names (decoded tokens), else by their index."""
    u, v = teacher_logits.double() / temperature, student_logits.double() / temperature  # [C]
    lse_t, lse_s = torch.logsumexp(u, 0), torch.logsumexp(v, 0)
    order = torch.argsort(u, descending=True, stable=True)[:top]  # [K]: the teacher's ranking
    p, q = (u[order] - lse_t).exp().tolist(), (v[order] - lse_s).exp().tolist()
    ids = order.tolist()
    names = [
        class_names[i] if class_names and i < len(class_names) else (token_names or {}).get(i, str(i)) for i in ids
    ]
    if len(ids) < u.shape[0]:  # the other classes' mass, summed in log space (exact, not 1 − Σ shown)
        p.append(float((torch.logsumexp(u.index_fill(0, order, -torch.inf), 0) - lse_t).exp()))
        q.append(float((torch.logsumexp(v.index_fill(0, order, -torch.inf), 0) - lse_s).exp()))
        names.append(f"the rest ({u.shape[0] - len(ids)} classes)")
    names = _unique(names)
    fig = go.Figure(
        [
            go.Bar(x=names, y=p, name="teacher", marker_color=TEACHER),
            go.Bar(x=names, y=q, name="student", marker_color=STUDENT),
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


def _unique(names: list[str]) -> list[str]:
    """Category labels made distinct (two tokens may decode alike): a repeat gets an invisible suffix."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else n + "\u200b" * (seen[n] - 1))
    return out


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
