"""The pair scorecard and the risk relation (METHODS §11).

What the view shows
-------------------
- **Scorecard**: what the student costs and what it keeps. Parameters of teacher and student and
  their ratio (the compression), measured latency and the speed-up, the accuracy (top-1; for
  language models next-token accuracy, with the loss in nats per token and the perplexity) of the
  teacher, of the student trained alone (the baseline) and of the distilled student, the share of
  the teacher's accuracy the distilled student keeps, and how often student and teacher disagree.
  Distillation pays when the distilled student beats the baseline at the same size.
- **Risk relation** (eq. 4 of arXiv 2504.13825): for 0-1 error on any sample set,
  err(student) ≤ err(teacher) + P(student and teacher disagree), because wherever the student is
  wrong and the teacher right, the two disagree. The figure sets the student's error beside the
  bound, the teacher's error with the disagreement stacked on top, so the bound's terms are
  numbers. Look at which term dominates: a large disagreement with a good teacher means the
  student has not matched the teacher (more capacity, a better temperature or longer training);
  a bound dominated by the teacher's own error means a better teacher is the lever. With training
  logits given, the student's generalisation gap (test error − train error) is shown too.

Classification logits are [N, C] with labels [N]. Causal LM logits [N, L, V] with labels [N, L]
are flattened to positions, keeping those whose label is not −100. Multi-label pairs get a plain
table instead (``pair_multilabel_scorecard``: exact-match and per-label accuracy, agreement with the
teacher). Accuracy and agreement are ``kdcore.metrics``'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import Tensor

from kdcore import metrics as km
from kdcore.validation import check_labels, check_logits, check_positive, check_same_shape

from . import _style

__all__ = [
    "RiskRelation",
    "risk_relation",
    "model_metrics",
    "Scorecard",
    "compute_scorecard",
    "pair_scorecard",
    "scorecard_table",
    "figure_risk",
    "figure_scorecard",
    "multilabel_metrics",
    "pair_multilabel_scorecard",
]

IGNORE_INDEX = km.IGNORE_INDEX  # -100: label of a position that is not predicted (causal LMs)


# --------------------------------------------------------------------------- inputs
def _flat(name: str, logits: Any, labels: Any, where: str) -> tuple[Tensor, Tensor]:
    """Logits [N, C] or [N, L, V] and labels -> kept rows [M, C] float64 and labels [M]."""
    z = logits if isinstance(logits, Tensor) else torch.as_tensor(np.asarray(logits, dtype=np.float64))
    z = check_logits(name, z, where=where, min_dim=2).detach().to(torch.float64)
    y = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(
            f"The 'labels' argument of {where} must hold integer class indices. Got dtype {y.dtype} instead."
        )
    if tuple(y.shape) != tuple(z.shape[:-1]):
        raise ValueError(
            f"The 'labels' argument of {where} must have shape {tuple(z.shape[:-1])} to match '{name}' "
            f"{tuple(z.shape)}. Got {tuple(y.shape)} instead."
        )
    z, y = z.reshape(-1, z.shape[-1]), y.reshape(-1).to(z.device)
    keep = y != IGNORE_INDEX
    if not bool(keep.any()):
        raise ValueError(f"The 'labels' argument of {where} marks every position {IGNORE_INDEX}: nothing to score.")
    z, y = z[keep], y[keep]
    return z, check_labels(y, z.shape[0], z.shape[1], where=where)


# --------------------------------------------------------------------------- risk relation
@dataclass
class RiskRelation:
    """The terms of err_s ≤ err_t + P(disagree) on one sample set (fractions in [0, 1])."""

    err_teacher: float  # teacher's 0-1 error
    err_student: float  # student's 0-1 error
    disagreement: float  # share of samples where their top classes differ
    bound: float  # err_teacher + disagreement
    slack: float  # bound − err_student (never negative)
    n: int  # samples (or kept positions)
    train_err_student: float | None = None  # student's error on the training set, if given
    gen_gap: float | None = None  # err_student − train_err_student

    @property
    def holds(self) -> bool:
        """The bound holds (it always does for 0-1 error; a False here means a bug)."""
        return self.err_student <= self.bound + 1e-12


def risk_relation(
    student_logits: Any, teacher_logits: Any, labels: Any, *, train: tuple[Any, Any] | None = None
) -> RiskRelation:
    """err_s, err_t and the disagreement rate, so that err_s ≤ err_t + disagreement is shown as numbers.

    ``train`` = (student_train_logits, train_labels) adds the student's train error and its
    generalisation gap (test − train). Source: METHODS §11, eq. 4 of arXiv 2504.13825.
    """
    where = "risk_relation"
    zs, y = _flat("student_logits", student_logits, labels, where)
    zt, _ = _flat("teacher_logits", teacher_logits, labels, where)
    check_same_shape(zs, zt, where=where)
    err_s, err_t = 1.0 - km.accuracy(zs, y), 1.0 - km.accuracy(zt, y)
    dis = km.disagreement(zs, zt)
    out = RiskRelation(
        err_teacher=err_t,
        err_student=err_s,
        disagreement=dis,
        bound=err_t + dis,
        slack=err_t + dis - err_s,
        n=int(y.numel()),
    )
    if train is not None:
        ztr, ytr = _flat("train[0] (student train logits)", train[0], train[1], where)
        out.train_err_student = 1.0 - km.accuracy(ztr, ytr)
        out.gen_gap = err_s - out.train_err_student
    return out


def model_metrics(logits: Any, labels: Any) -> dict[str, float]:
    """accuracy (top-1), error, loss (mean cross-entropy, nats per sample or token), perplexity = exp(loss), n."""
    z, y = _flat("logits", logits, labels, "model_metrics")
    nll = -torch.log_softmax(z, 1).gather(1, y[:, None])[:, 0]  # [N]
    acc = km.accuracy(z, y)
    loss = float(nll.mean())
    return {
        "accuracy": acc,
        "error": 1 - acc,
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "n": int(y.numel()),
    }


# --------------------------------------------------------------------------- scorecard
@dataclass
class Scorecard:
    """What the student costs and keeps, against its teacher (and its baseline, trained alone)."""

    teacher_params: int  # parameters of the teacher
    student_params: int  # parameters of the student
    param_ratio: float  # teacher_params / student_params (compression)
    teacher_latency_s: float | None  # measured seconds per forward of the probe batch
    student_latency_s: float | None  # idem for the student
    speedup: float | None  # teacher_latency_s / student_latency_s
    teacher: dict  # model_metrics of the teacher
    student: dict  # model_metrics of the distilled student
    baseline: dict | None  # model_metrics of the student trained without a teacher
    retained: float  # student accuracy / teacher accuracy (share kept)
    disagreement: float  # share of samples where student and teacher disagree
    risk: RiskRelation  # err_s ≤ err_t + disagreement, as numbers


def _count(name: str, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"The '{name}' parameter of {where} must be a positive integer. Got {value!r} instead.")
    return int(value)


def _seconds(name: str, value: Any, where: str) -> float | None:
    """Latency in seconds: a float, or a mapping with 'median_s', 'mean_s' or 'seconds'."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("median_s", "mean_s", "seconds"):
            if key in value:
                value = value[key]
                break
    return check_positive(name, value, where=where, what="a latency in seconds")


def compute_scorecard(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any,
    *,
    teacher_params: int,
    student_params: int,
    teacher_latency_s: float | None = None,
    student_latency_s: float | None = None,
    baseline_logits: Any = None,
) -> Scorecard:
    """The scorecard from logits on one sample set and the measured sizes and latencies."""
    where = "compute_scorecard"
    tp, sp = _count("teacher_params", teacher_params, where), _count("student_params", student_params, where)
    tl, sl = (
        _seconds("teacher_latency_s", teacher_latency_s, where),
        _seconds("student_latency_s", student_latency_s, where),
    )
    risk = risk_relation(student_logits, teacher_logits, labels)
    t, s = model_metrics(teacher_logits, labels), model_metrics(student_logits, labels)
    b = None if baseline_logits is None else model_metrics(baseline_logits, labels)
    retained = s["accuracy"] / t["accuracy"] if t["accuracy"] > 0 else math.nan
    return Scorecard(
        teacher_params=tp,
        student_params=sp,
        param_ratio=tp / sp,
        teacher_latency_s=tl,
        student_latency_s=sl,
        speedup=(tl / sl) if tl and sl else None,
        teacher=t,
        student=s,
        baseline=b,
        retained=retained,
        disagreement=risk.disagreement,
        risk=risk,
    )


def pair_scorecard(
    teacher: Any, student: Any, inputs: Any, labels: Any, *, baseline: Any = None, latency_repeats: int = 7
) -> Scorecard:
    """The scorecard of kdcore ModelAdapters on one probe batch.

    Uses ``adapter.num_parameters()``, ``adapter.latency(inputs, repeats=latency_repeats)`` (the median
    of that many timed forwards after one warm-up; seconds, or a mapping with 'median_s'/'mean_s'/'seconds')
    and ``adapter.logits(inputs)``.
    """

    def lat(adapter):
        return adapter.latency(inputs, repeats=latency_repeats, warmup=1)

    return compute_scorecard(
        student.logits(inputs),
        teacher.logits(inputs),
        labels,
        teacher_params=teacher.num_parameters(),
        student_params=student.num_parameters(),
        teacher_latency_s=lat(teacher),
        student_latency_s=lat(student),
        baseline_logits=None if baseline is None else baseline.logits(inputs),
    )


def scorecard_table(card: Scorecard) -> pd.DataFrame:
    """The scorecard as rows of (quantity, teacher, baseline, student, comparison) for display."""

    def ms(v):
        return None if v is None else 1000 * v

    b = card.baseline or {}
    rows = [
        ("parameters (count)", card.teacher_params, None, card.student_params, f"{card.param_ratio:.2f}× fewer"),
        (
            "latency (ms per probe batch)",
            ms(card.teacher_latency_s),
            None,
            ms(card.student_latency_s),
            None if card.speedup is None else f"{card.speedup:.2f}× faster",
        ),
        (
            "accuracy (fraction)",
            card.teacher["accuracy"],
            b.get("accuracy"),
            card.student["accuracy"],
            f"{card.retained:.1%} of the teacher's kept",
        ),
        ("loss (nats per sample/token)", card.teacher["loss"], b.get("loss"), card.student["loss"], None),
        ("perplexity", card.teacher["perplexity"], b.get("perplexity"), card.student["perplexity"], None),
        ("disagreement with the teacher (fraction)", None, None, card.disagreement, None),
        (
            "error bound err_t + disagreement",
            None,
            None,
            card.risk.bound,
            f"err_s = {card.risk.err_student:.4f} ≤ {card.risk.bound:.4f}",
        ),
    ]
    return pd.DataFrame(rows, columns=["quantity", "teacher", "baseline", "student", "comparison"])


# --------------------------------------------------------------------------- multi-label scorecard
def multilabel_metrics(logits: Any, teacher_logits: Any, labels: Any) -> dict[str, float]:
    """One multi-label model against the labels and its teacher; logits [N, C], multi-hot labels [N, C].

    A label is predicted when its logit is > 0 (sigmoid > 0.5). exact_match: share of samples with
    every label right; label_accuracy: share of (sample, label) pairs right; label_agreement_with_teacher:
    share of (sample, label) pairs where model and teacher predict the same.
    """
    return {
        "exact_match": km.accuracy(logits, labels, task="multilabel", multilabel="exact"),
        "label_accuracy": km.accuracy(logits, labels, task="multilabel", multilabel="micro"),
        "label_agreement_with_teacher": km.agreement(logits, teacher_logits, task="multilabel"),
    }


def pair_multilabel_scorecard(
    models: Mapping[str, Any], inputs: Any, labels: Any, *, teacher: str = "teacher", latency_repeats: int = 5
) -> pd.DataFrame:
    """Per model (kdcore ModelAdapters by role, e.g. ``pair.models()``): parameters, latency (ms per
    probe batch, median of ``latency_repeats`` timed forwards), and ``multilabel_metrics`` against the
    model named ``teacher``. One row per model, in the mapping's order."""
    if teacher not in models:
        raise ValueError(
            f"The 'teacher' parameter of pair_multilabel_scorecard must name one of the models "
            f"{list(models)}. Got {teacher!r} instead."
        )
    logits = {role: ad.logits(inputs).cpu() for role, ad in models.items()}
    y = labels.cpu() if isinstance(labels, Tensor) else labels
    rows = [
        {
            "model": role.replace("_", " "),
            "parameters": ad.num_parameters(),
            "latency_ms": 1000 * float(ad.latency(inputs, repeats=latency_repeats)),
            **multilabel_metrics(logits[role], logits[teacher], y),
        }
        for role, ad in models.items()
    ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figures
def figure_risk(risk: RiskRelation) -> go.Figure:
    """Student error beside its bound: teacher error with the disagreement rate stacked on top."""
    cats = ["student error", "bound: teacher error + disagreement"]
    fig = go.Figure()
    bars = (  # (category, value, legend name, colour, hover label)
        (cats[0], risk.err_student, "student error err_s", _style.STUDENT, "student 0-1 error"),
        (cats[1], risk.err_teacher, "teacher error err_t", _style.TEACHER, "teacher 0-1 error"),
        (cats[1], risk.disagreement, "disagreement P(student ≠ teacher)", _style.NEUTRAL, "disagreement rate"),
    )
    for cat, value, name, colour, label in bars:
        fig.add_trace(
            go.Bar(
                x=[cat],
                y=[value],
                name=name,
                marker={"color": colour},
                hovertemplate=f"{label}: %{{y:.4f}}<extra></extra>",
            )
        )
    if risk.train_err_student is not None:
        fig.add_trace(
            go.Bar(
                x=["student train error"],
                y=[risk.train_err_student],
                name="student train error",
                marker={"color": _style.STUDENT, "opacity": 0.5},
                hovertemplate=(
                    f"student train error: %{{y:.4f}}<br>generalisation gap: {risk.gen_gap:+.4f}<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="stack")
    fig.add_annotation(
        x=cats[1], y=risk.bound, text=f"bound {risk.bound:.3f} (slack {risk.slack:.3f})", showarrow=False, yshift=12
    )
    title = (
        f"Risk relation: err_s = {risk.err_student:.3f} ≤ err_t + disagreement = "
        f"{risk.err_teacher:.3f} + {risk.disagreement:.3f} (n = {risk.n})"
    )
    return _style.finish(fig, title=title, x="quantity", y="rate (fraction of samples)")


def _model_bar(fig: go.Figure, role: str, label: str, value: float, hover: str, *, col: int) -> None:
    """One model's bar in panel (1, col), in its role's colour; only panel 1 adds it to the legend."""
    fig.add_trace(
        go.Bar(
            x=[label],
            y=[value],
            name=label,
            legendgroup=role,
            showlegend=col == 1,
            marker={"color": _style.ROLE_COLOURS[role]},
            hovertemplate=hover + "<extra></extra>",
        ),
        row=1,
        col=col,
    )


def figure_scorecard(card: Scorecard) -> go.Figure:
    """Size, latency and accuracy of teacher, baseline student and distilled student, side by side."""
    speed = "" if card.speedup is None else f" ({card.speedup:.2f}× faster)"
    titles = [
        f"parameters ({card.param_ratio:.2f}× fewer)",
        f"latency{speed}",
        f"accuracy ({card.retained:.1%} of the teacher's kept)",
    ]
    fig = _style.panels_in_a_row(titles, spacing=0.11)
    models = [
        ("teacher", card.teacher, card.teacher_params, card.teacher_latency_s),
        ("baseline", card.baseline, card.student_params, card.student_latency_s),
        ("student", card.student, card.student_params, card.student_latency_s),
    ]
    for role, metrics, params, latency in models:
        if metrics is None:
            continue
        label = {"teacher": "teacher", "baseline": "student alone", "student": "distilled student"}[role]
        _model_bar(fig, role, label, params / 1e6, f"{label}<br>%{{y:.3f}} M parameters", col=1)
        if latency is not None:
            _model_bar(fig, role, label, latency * 1000, f"{label}<br>%{{y:.2f}} ms per batch", col=2)
        hover = (
            f"{label}<br>accuracy %{{y:.2f}} %<br>loss {metrics['loss']:.4f} nats"
            f"<br>perplexity {metrics['perplexity']:.3g}"
        )
        _model_bar(fig, role, label, 100 * metrics["accuracy"], hover, col=3)
    fig.update_yaxes(title_text="parameters (millions)", row=1, col=1)
    fig.update_yaxes(title_text="latency (ms per batch)", row=1, col=2)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 106], row=1, col=3)  # "100" clear of the panel title
    fig.update_xaxes(title_text="model")
    return _style.finish(fig, title=f"Pair scorecard (disagreement with the teacher: {card.disagreement:.1%})")
