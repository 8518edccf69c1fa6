"""The logit toy of the Soft labels page: a handful of hand-typed teacher and student logits, the soft
labels p(T) of both, each class's term of KL(p_T^t ‖ p_T^s), and the student's gradient with and
without KD's T² factor — the "why T²" lesson.

With p = softmax(z_t / T) and q = softmax(z_s / T):

    ∂ KL(p ‖ q) / ∂ z_s = (q − p) / T            (shrinks as 1/T, and q − p itself shrinks as 1/T)
    ∂ T²·KL(p ‖ q) / ∂ z_s = T · (q − p)          (about constant in T once T is large)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses import _style
from kdcore.validation import InvalidParameterError

DEFAULT_TEACHER = (6.0, 3.0, 2.0, -1.0, -2.0)  # a confident teacher with a runner-up class
DEFAULT_STUDENT = (3.0, 2.5, -0.5, 0.5, -1.0)  # a student that has the answer but not the ranking
TOY_TEMPERATURES = tuple(float(t) for t in np.round(np.geomspace(0.5, 20.0, 16), 3))


@dataclass
class ToyResult:
    """The toy at one temperature: one row per class, and the totals."""

    per_class: pd.DataFrame  # class, teacher logit, student logit, p_teacher, p_student, kl_term, grad, grad_t2
    temperature: float
    kl: float  # KL(p_T^t ‖ p_T^s) in nats (the sum of kl_term)
    t2_kl: float  # T²·KL, the term KD adds to the loss


def _logits(name: str, values: Sequence[float], where: str) -> np.ndarray:
    z = np.asarray(values, dtype=np.float64)
    if z.ndim != 1 or z.size < 2 or not np.isfinite(z).all():
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be at least 2 finite numbers (one "
            f"logit per class). Got {list(np.atleast_1d(z))} instead."
        )
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def toy(
    teacher_logits: Sequence[float],
    student_logits: Sequence[float],
    temperature: float,
    *,
    class_names: Sequence[str] | None = None,
) -> ToyResult:
    """Soft labels, per-class KL terms and the student's gradients at one temperature T > 0.

    teacher_logits, student_logits: [C] each, the same C ≥ 2. kl_term_c = p_c·log(p_c / q_c) (nats;
    negative where the student puts more mass than the teacher); grad = ∂KL/∂z_s = (q − p)/T;
    grad_t2 = ∂(T²·KL)/∂z_s = T·(q − p).
    """
    where = "analyses.logit_toy.toy"
    zt, zs = _logits("teacher_logits", teacher_logits, where), _logits("student_logits", student_logits, where)
    if zt.size != zs.size:
        raise InvalidParameterError(
            f"The teacher and student logits of {where} must have one entry per class each. "
            f"Got {zt.size} teacher and {zs.size} student logits: make them the same length."
        )
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise InvalidParameterError(
            f"The 'temperature' parameter of {where} must be a number > 0. Got {temperature!r} instead."
        )
    T = float(temperature)
    p, q = _softmax(zt / T), _softmax(zs / T)  # [C] each
    term = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(zt.size)]
    df = pd.DataFrame(
        {
            "class": names,
            "teacher logit": zt,
            "student logit": zs,
            "p_teacher": p,
            "p_student": q,
            "kl_term": term,
            "grad": (q - p) / T,
            "grad_t2": T * (q - p),
        }
    )
    kl = float(term.sum())
    return ToyResult(per_class=df, temperature=T, kl=kl, t2_kl=T * T * kl)


def gradient_norms(
    teacher_logits: Sequence[float], student_logits: Sequence[float], temperatures: Sequence[float] = TOY_TEMPERATURES
) -> pd.DataFrame:
    """‖∂KL/∂z_s‖₂ and ‖∂(T²·KL)/∂z_s‖₂ at each temperature: columns temperature, without_t2, with_t2."""
    rows = []
    for T in temperatures:
        r = toy(teacher_logits, student_logits, float(T)).per_class
        rows.append(
            {
                "temperature": float(T),
                "without_t2": float(np.linalg.norm(r["grad"])),
                "with_t2": float(np.linalg.norm(r["grad_t2"])),
            }
        )
    return pd.DataFrame(rows)


def figure_toy(result: ToyResult) -> go.Figure:
    """Three panels over the classes: p(T) of teacher and student; each class's KL term; the student's
    gradient without and with T² (each panel its own axis: probabilities, nats, gradient)."""
    df, T = result.per_class, result.temperature
    titles = [f"soft labels p(T = {T:g})", f"KL terms (sum {result.kl:.3f} nats)", "student gradient ∂/∂z_s"]
    fig = _style.panels_in_a_row(titles, spacing=0.09)
    x = df["class"].tolist()
    bars = (  # (column, legend name, colour, hover label, hover unit, panel)
        ("p_teacher", "teacher p(T)", _style.TEACHER, "teacher", "", 1),
        ("p_student", "student p(T)", _style.STUDENT, "student", "", 1),
        ("kl_term", "p·log(p/q)", _style.NEUTRAL, "KL term", " nats", 2),
        ("grad", "without T²: (q − p)/T", _style.class_colour(9), "without T²", "", 3),
        ("grad_t2", "with T²: T·(q − p)", _style.class_colour(4), "with T²", "", 3),
    )
    for column, name, colour, label, unit, col in bars:
        fig.add_trace(
            go.Bar(
                x=x,
                y=df[column],
                name=name,
                marker_color=colour,
                hovertemplate=f"%{{x}}: %{{y:.4f}}{unit}<extra>{label}</extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="probability", range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(title_text="nats", row=1, col=2)
    fig.update_yaxes(title_text="gradient per logit", row=1, col=3)
    fig.update_xaxes(title_text="class", type="category")
    return _style.finish(fig, title=f"The logit toy at T = {T:g}: T²·KL = {result.t2_kl:.3f} nats", height=400)


def figure_gradient_norms(norms: pd.DataFrame, temperature: float | None = None) -> go.Figure:
    """The student's gradient norm against T, without and with T² (log–log): only the T² curve levels off."""
    fig = go.Figure()
    for column, name, colour in (
        ("without_t2", "‖∂KL/∂z_s‖ (without T²)", _style.class_colour(9)),
        ("with_t2", "‖∂(T²·KL)/∂z_s‖ (with T²)", _style.class_colour(4)),
    ):
        fig.add_trace(
            go.Scatter(x=norms["temperature"], y=norms[column], mode="lines+markers", name=name, line={"color": colour})
        )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", dtick=1)  # a label at each power of ten only
    if temperature is not None:
        fig.add_vline(x=float(temperature), line={"color": _style.NEUTRAL, "dash": "dash", "width": 1})
    return _style.finish(
        fig,
        title="Gradient size against temperature: T² keeps it level",
        x="temperature T (log scale)",
        y="gradient L2 norm (log scale)",
        height=380,
    )
