"""Multi-label pairs: every label is its own yes/no question answered by a sigmoid, so soft labels are
per-label σ(z / T) (not a softmax over labels: there is no single true class, no p_y, no dark
knowledge spread over the other classes), and the scores are per-label F1, micro and macro.

Statistics of per-label soft labels at temperature T, over inputs n and labels c, p = σ(z / T):
- binary entropy h(p) = −p·log p − (1−p)·log(1−p) (nats, at most ln 2 at p = ½);
- mean p on the labels present and on the labels absent (how sure the model is, each way);
- expected number of labels Σ_c p (against the true count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from analyses import _style
from kdcore.validation import InvalidParameterError


def _pair(logits: torch.Tensor, targets: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if (
        not isinstance(logits, torch.Tensor)
        or not isinstance(targets, torch.Tensor)
        or logits.dim() != 2
        or logits.shape != targets.shape
    ):
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for v in (logits, targets)]
        raise InvalidParameterError(
            f"The logits and targets of {where} must be tensors [N, C] of the same shape "
            f"(targets multi-hot 0/1). Got {shapes[0]} and {shapes[1]} instead."
        )
    return logits.detach().double().cpu(), targets.detach().cpu().bool()


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """2·tp / (2·tp + fp + fn); 1 where a label is never present nor predicted (nothing to get wrong)."""
    den = 2 * tp + fp + fn
    return torch.where(den > 0, 2 * tp / den.clamp(min=1), torch.ones_like(den))


def label_scores(
    logits: Mapping[str, torch.Tensor], targets: torch.Tensor, *, class_names: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model (a label is predicted when its logit > 0): micro F1, macro F1, exact match, label
    accuracy; and the F1 of every label.

    logits: model name -> [N, C]; targets: [N, C] multi-hot. Returns (summary: one row per model with
    columns model, micro F1, macro F1, exact match, label accuracy; per_label: one row per (model, label)
    with columns model, label, F1, support).
    """
    rows, per_label = [], []
    for name, z in logits.items():
        z, y = _pair(z, targets, "analyses.multilabel.label_scores")
        pred = z > 0  # [N, C]
        tp, fp, fn = (pred & y).sum(0).double(), (pred & ~y).sum(0).double(), (~pred & y).sum(0).double()  # [C]
        f1 = _f1(tp, fp, fn)
        micro = _f1(tp.sum(), fp.sum(), fn.sum())
        rows.append(
            {
                "model": name,
                "micro F1": float(micro),
                "macro F1": float(f1.mean()),
                "exact match": float((pred == y).all(1).double().mean()),
                "label accuracy": float((pred == y).double().mean()),
            }
        )
        labels = list(class_names) if class_names is not None else [f"label {c}" for c in range(z.shape[1])]
        per_label += [
            {"model": name, "label": labels[c], "F1": float(f1[c]), "support": int(y[:, c].sum())}
            for c in range(z.shape[1])
        ]
    return pd.DataFrame(rows), pd.DataFrame(per_label)


def soft_label_sweep(
    logits: Mapping[str, torch.Tensor], targets: torch.Tensor, temperatures: Sequence[float]
) -> pd.DataFrame:
    """Per-label sigmoid soft labels σ(z / T) of each model at each T: mean binary entropy (nats), mean
    p on present and on absent labels, expected label count Σ_c p and the true mean count.

    Returns one row per (model, temperature): role, temperature, binary_entropy, p_present, p_absent,
    expected_labels, true_labels.
    """
    rows = []
    for name, z in logits.items():
        z, y = _pair(z, targets, "analyses.multilabel.soft_label_sweep")
        for T in temperatures:
            if not float(T) > 0:
                raise InvalidParameterError(
                    f"Every temperature of analyses.multilabel.soft_label_sweep must be > 0. Got {T!r}."
                )
            p = torch.sigmoid(z / float(T))  # [N, C]
            h = -(p * torch.log(p.clamp_min(1e-300)) + (1 - p) * torch.log((1 - p).clamp_min(1e-300)))
            rows.append(
                {
                    "role": name,
                    "temperature": float(T),
                    "binary_entropy": float(h.mean()),
                    "p_present": float(p[y].mean()) if bool(y.any()) else float("nan"),
                    "p_absent": float(p[~y].mean()) if bool((~y).any()) else float("nan"),
                    "expected_labels": float(p.sum(1).mean()),
                    "true_labels": float(y.double().sum(1).mean()),
                }
            )
    return pd.DataFrame(rows)


_PANELS = (
    ("binary_entropy", "binary entropy h(p) (nats, max ln 2)"),
    ("expected_labels", "expected labels Σ p"),
    ("p_present", "mean p on present labels"),
    ("p_absent", "mean p on absent labels"),
)


def figure_sweep(sweep: pd.DataFrame) -> go.Figure:
    """The four per-label statistics against T (2×2 panels), one line per model; the true label count dotted."""
    fig = make_subplots(
        rows=2, cols=2, subplot_titles=[label for _, label in _PANELS], horizontal_spacing=0.1, vertical_spacing=0.18
    )
    for i, (column, label) in enumerate(_PANELS):
        row, col = divmod(i, 2)
        for role, d in sweep.groupby("role", sort=False):
            fig.add_trace(
                _style.temperature_trace(role, d, column, label, showlegend=i == 0),
                row=row + 1,
                col=col + 1,
            )
        if column == "expected_labels":
            d = sweep.drop_duplicates("temperature")
            truth = _style.line_trace(
                d["temperature"], d["true_labels"], "true labels per input", _style.NEUTRAL, dash="dot"
            )
            fig.add_trace(truth, row=row + 1, col=col + 1)
        fig.update_xaxes(type="log", title_text="temperature T (log scale)", row=row + 1, col=col + 1)
        fig.update_yaxes(title_text=label.split(" (")[0], row=row + 1, col=col + 1)
    return _style.finish(fig, title="Per-label soft labels σ(z / T) against temperature (mean over inputs)", height=640)


def figure_labels_at(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    present: torch.Tensor,
    temperature: float,
    *,
    class_names: Sequence[str] | None = None,
) -> go.Figure:
    """One input: each label's σ(z / T) for teacher and student, present labels marked with a ★ in their name."""
    T = float(temperature)
    p = torch.sigmoid(teacher_logits.double().cpu() / T)  # [C]
    q = torch.sigmoid(student_logits.double().cpu() / T)  # [C]
    names = list(class_names) if class_names is not None else [f"label {c}" for c in range(p.numel())]
    x = [f"{n} ★" if bool(present[c]) else n for c, n in enumerate(names)]
    fig = go.Figure(
        [
            go.Bar(x=x, y=p.tolist(), name="teacher σ(z/T)", marker_color=_style.TEACHER),
            go.Bar(x=x, y=q.tolist(), name="student σ(z/T)", marker_color=_style.STUDENT),
        ]
    )
    fig.add_hline(y=0.5, line={"color": _style.NEUTRAL, "dash": "dash", "width": 1})
    fig.update_layout(barmode="group")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.05])
    return _style.finish(
        fig,
        title=f"Per-label soft labels of one input at T = {T:g} (★ = present)",
        x="label",
        y="σ(z / T), each label on its own",
        height=360,
    )


def figure_scores(summary: pd.DataFrame, per_label: pd.DataFrame) -> go.Figure:
    """Left: micro F1, macro F1 and exact match per model. Right: each label's F1 per model."""
    fig = _style.panels_in_a_row(["overall", "F1 of each label"], widths=[0.45, 0.55], spacing=0.1)
    measures = ["micro F1", "macro F1", "exact match"]
    for _, r in summary.iterrows():
        colour = _style.role_colour(r["model"])
        fig.add_trace(
            go.Bar(
                x=measures,
                y=[r[m] for m in measures],
                name=r["model"],
                legendgroup=r["model"],
                marker_color=colour,
                hovertemplate="%{x}: %{y:.3f}<extra>" + r["model"] + "</extra>",
            ),
            row=1,
            col=1,
        )
        d = per_label[per_label["model"] == r["model"]]
        fig.add_trace(
            go.Bar(
                x=d["label"],
                y=d["F1"],
                name=r["model"],
                legendgroup=r["model"],
                showlegend=False,
                marker_color=colour,
                customdata=d["support"],
                hovertemplate="%{x}: F1 %{y:.3f} (%{customdata} present)<extra>" + r["model"] + "</extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05], title_text="score (0–1)")
    fig.update_xaxes(title_text="measure", row=1, col=1)
    fig.update_xaxes(title_text="label", type="category", row=1, col=2)
    return _style.finish(fig, title="Multi-label scores (a label is predicted when its logit > 0)", height=420)
