"""Soft labels against temperature (METHODS §2; Hinton, Vinyals & Dean 2015, arXiv 1503.02531).

What the view shows
-------------------
Dividing the logits by a temperature T > 1 flattens the teacher's distribution p_T = softmax(z/T):
the probability of the top class falls and the other classes, the "dark knowledge", gain mass.
- **Class probabilities**: for a few chosen samples, each class's probability as T grows (teacher
  solid, student dashed). Look for which wrong classes the teacher ranks second and third: that
  ranking is what the student learns from, and it only becomes visible at T > 1.
- **Sweep over a dataset**: mean entropy H = −Σ p log p (nats), mean effective number of classes
  exp(H), mean target-class probability p_y and mean dark-knowledge mass 1 − p_y, against T.
  A useful T puts real mass on the other classes (dark knowledge well above 0) without making the
  distribution uniform (effective classes approaching C means the labels say nothing any more).
- **Gradient scale**: the student's KD gradient ‖∂(T²·KL)/∂z_s‖₂ = T·‖q_T − p_T‖₂ (mean over samples)
  and the loss T²·KL(p_T ‖ q_T) itself. As T → ∞, T²·KL tends to the logit-matching limit
  Σ_i (Δz_i − mean Δz)² / (2C), Δz = z_s − z_t (Hinton et al. 2015, §2.1): at high T distillation is
  matching centred logits with a squared error. The figure draws that limit as a dashed line.

Conventions: student first, teacher second in every signature that takes both. With ``labels=None``
the target class is the teacher's argmax (the same at every T > 0; ties go to the lower index), so
``target_prob`` equals ``max_prob``; pass labels to measure the true class (the spec's test vectors do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from kdcore.validation import check_labels, check_logits, check_same_shape, check_tensor

from . import _style

__all__ = [
    "temperature_sweep",
    "temperature_sweep_per_sample",
    "compare_sweeps",
    "class_probabilities",
    "gradient_scale",
    "logit_matching_limit",
    "sweep_pair",
    "figure_class_probabilities",
    "figure_sweep",
    "figure_gradient_scale",
]

CHUNK_LOGITS = 2**22  # logits per chunk of rows (32 MB in float64): the sweeps stream over rows
TOP_CLASSES = 20  # class_probabilities: above this many classes, the teacher's top ones plus "the rest"
REST = -1  # class_index of the "rest" bucket
SWEEP_COLUMNS = ("temperature", "entropy", "max_prob", "target_prob", "dark_knowledge", "effective_classes")


# --------------------------------------------------------------------------- input checks
def _logits(name: str, x: Any, where: str) -> Tensor:
    """Logits [N, C] as float64 (numpy accepted; −inf marks a masked class)."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(
                f"The '{name}' argument of {where} must be a tensor or array of logits [N, C]. "
                f"Got {type(x).__name__} instead."
            ) from None
    x = check_logits(name, x, where=where, dims=2)
    return x.detach()  # float64 per chunk of rows (_chunks): no [N, C] float64 copy of a large vocabulary


def _chunks(n_rows: int, n_classes: int) -> list[slice]:
    """Row slices of about CHUNK_LOGITS logits each (at least one row)."""
    per = max(1, CHUNK_LOGITS // max(n_classes, 1))
    return [slice(i, min(i + per, n_rows)) for i in range(0, n_rows, per)]


def _temperatures(temperatures: Any, where: str) -> Tensor:
    """A 1-D grid of finite temperatures > 0 -> float64 tensor [K]."""
    try:
        t = torch.as_tensor(np.asarray(temperatures, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ValueError(
            f"The 'temperatures' parameter of {where} must be a sequence of floats > 0. Got {temperatures!r} instead."
        ) from None
    if t.numel() == 0:
        raise ValueError(
            f"The 'temperatures' parameter of {where} must hold at least one temperature. Got an empty grid."
        )
    bad = ~torch.isfinite(t) | (t <= 0)
    if bool(bad.any()):
        raise ValueError(
            f"The 'temperatures' parameter of {where} must hold finite floats > 0. "
            f"Got {t[bad].tolist()} among {t.tolist()}."
        )
    return t


def _targets(labels: Any, teacher: Tensor, where: str) -> Tensor:
    """Class indices [N]: the labels when given, else the teacher's argmax."""
    if labels is None:
        return teacher.argmax(dim=-1)  # [N]; argmax(z/T) = argmax(z) for every T > 0
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    return check_labels(labels.to(teacher.device), teacher.shape[0], teacher.shape[1], where=where)


# --------------------------------------------------------------------------- per-sample maths
def _per_sample(logits: Tensor, targets: Tensor, temperature: float) -> dict[str, Tensor]:
    """Entropy, max prob, target prob, dark knowledge and effective classes per sample at one T."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)  # [N, C] float64
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # 0·log 0 = 0
    entropy = -plogp.sum(-1)  # [N]
    # non-target mass summed in log space: exact when p_y is close to 1 (no 1 − p_y rounding)
    dark = torch.logsumexp(logp.scatter(1, targets[:, None], -torch.inf), dim=-1).exp()  # [N]
    return {
        "entropy": entropy,
        "max_prob": p.max(dim=-1).values,
        "target_prob": p.gather(1, targets[:, None])[:, 0],
        "dark_knowledge": dark,
        "effective_classes": entropy.exp(),
    }


def temperature_sweep_per_sample(
    teacher_logits: Any, temperatures: Sequence[float], labels: Any = None
) -> pd.DataFrame:
    """Per-sample soft-label statistics (METHODS §2), one row per (temperature, sample).

    Columns: temperature, sample, entropy (nats), max_prob, target_prob, dark_knowledge (1 − p_y) and
    effective_classes (exp H). ``labels=None`` uses the teacher's argmax as the target class.
    """
    where = "temperature_sweep_per_sample"
    z = _logits("teacher_logits", teacher_logits, where)  # [N, C]
    temps = _temperatures(temperatures, where)
    y = _targets(labels, z, where)
    frames = []
    for t in temps.tolist():
        parts = [_per_sample(z[sl], y[sl], t) for sl in _chunks(*z.shape)]  # streamed over rows
        stats = {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]}
        frames.append(pd.DataFrame({"temperature": t, "sample": np.arange(z.shape[0]), **stats}))
    return pd.concat(frames, ignore_index=True)


def temperature_sweep(teacher_logits: Any, temperatures: Sequence[float], labels: Any = None) -> pd.DataFrame:
    """Soft-label statistics of the teacher against temperature, mean over samples (METHODS §2, eq. 2).

    One row per temperature with columns temperature, entropy (nats), max_prob, target_prob,
    dark_knowledge (1 − p_y) and effective_classes (exp H per sample, then the mean). With
    ``labels=None`` the target class is the teacher's argmax, so target_prob equals max_prob.
    Source: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531.
    """
    per = temperature_sweep_per_sample(teacher_logits, temperatures, labels)
    out = per.drop(columns="sample").groupby("temperature", sort=False).mean().reset_index()
    return out[list(SWEEP_COLUMNS)]


def compare_sweeps(
    student_logits: Any, teacher_logits: Any, temperatures: Sequence[float], labels: Any = None
) -> pd.DataFrame:
    """``temperature_sweep`` for the student and the teacher, stacked with a ``role`` column.

    With ``labels=None`` both use the teacher's argmax as the target class, so the two are comparable.
    """
    where = "compare_sweeps"
    s = _logits("student_logits", student_logits, where)
    t = _logits("teacher_logits", teacher_logits, where)
    check_same_shape(s, t, where=where)
    y = _targets(labels, t, where)
    rows = []
    for role, z in (("teacher", t), ("student", s)):
        df = temperature_sweep(z, temperatures, y)
        rows.append(df.assign(role=role))
    return pd.concat(rows, ignore_index=True)


def class_probabilities(
    teacher_logits: Any,
    temperatures: Sequence[float],
    *,
    student_logits: Any = None,
    samples: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    top: int = TOP_CLASSES,
    token_names: Callable[[list[int]], list[str]] | None = None,
) -> pd.DataFrame:
    """Each class's probability against temperature for chosen samples (long format).

    Columns: role ("teacher"/"student"), sample, class_index, class_name, temperature, probability.
    ``samples`` are row indices (default: the first three); ``class_names`` label the classes, else
    ``token_names(ids)`` (e.g. a Dataset.tokenizer's ``tokens``: decoded tokens), else the indices.
    With more than ``top`` classes, each sample keeps only the teacher's ``top`` classes (its largest
    logits: the same ranking at every T) plus one "rest" row (class_index -1) holding the exact mass
    of all the others, softmax summed in log space; so the table has at most top + 1 rows per
    (role, sample, temperature), whatever the vocabulary. ``result.attrs["n_classes"]`` is C.
    """
    where = "class_probabilities"
    t = _logits("teacher_logits", teacher_logits, where)
    temps = _temperatures(temperatures, where)
    models = {"teacher": t}
    if student_logits is not None:
        s = _logits("student_logits", student_logits, where)
        check_same_shape(s, t, where=where)
        models["student"] = s
    n, c = t.shape
    idx = _sample_rows(samples, n, where)
    names = _class_names(class_names, c, where)
    k = _top(top, where)
    frames = []
    for i in idx:
        shown = _shown_classes(t[i], k)  # [K] class ids, the teacher's ranking
        labels = _labels(shown, names, token_names)
        for role, z in models.items():
            for temp in temps.tolist():
                probs = _probabilities(z[i], shown, temp)  # [K] (+ the rest's mass)
                frames.append(_rows(role, i, shown, labels, temp, probs, c))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["n_classes"] = c
    return out


def _sample_rows(samples: Sequence[int] | None, n: int, where: str) -> list[int]:
    idx = list(range(min(3, n))) if samples is None else [int(i) for i in samples]
    if not idx or any(i < 0 or i >= n for i in idx):
        raise ValueError(
            f"The 'samples' parameter of {where} must hold row indices in [0, {n - 1}]. Got {idx} instead."
        )
    return idx


def _class_names(class_names: Sequence[str] | None, c: int, where: str) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(k) for k in class_names]
    if len(names) != c:
        raise ValueError(
            f"The 'class_names' parameter of {where} must name {c} classes. Got {len(names)} names instead."
        )
    return names


def _top(top: Any, where: str) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"The 'top' parameter of {where} must be an integer >= 1. Got {top!r} instead.")
    return int(top)


def _shown_classes(z: Tensor, k: int) -> Tensor:
    """Every class when there are at most k, else the k largest logits (ties to the lower index) -> ids [K]."""
    if z.shape[0] <= k:
        return torch.arange(z.shape[0])
    return torch.argsort(z, descending=True, stable=True)[:k]


def _labels(ids: Tensor, names: list[str] | None, token_names: Callable[[list[int]], list[str]] | None) -> list[str]:
    ids_list = ids.tolist()
    if names is not None:
        return [names[i] for i in ids_list]
    if token_names is not None:
        return [str(x) for x in token_names(ids_list)]
    return [str(i) for i in ids_list]


def _probabilities(z: Tensor, shown: Tensor, temp: float) -> Tensor:
    """softmax(z / T) at the shown classes [K], then the exact mass of the others when any are left out."""
    u = z.double() / temp  # [C]
    lse = torch.logsumexp(u, 0)
    p = (u[shown] - lse).exp()  # [K]
    if shown.shape[0] == z.shape[0]:
        return p
    rest = torch.logsumexp(u.index_fill(0, shown, -torch.inf), 0)  # log Σ over the other classes
    return torch.cat([p, (rest - lse).exp()[None]])


def _rows(role: str, sample: int, shown: Tensor, labels: list[str], temp: float, probs: Tensor, c: int) -> pd.DataFrame:
    ids, names = shown.tolist(), list(labels)
    if probs.shape[0] > len(ids):
        ids, names = [*ids, REST], [*names, f"the rest ({c - len(labels)} classes)"]
    return pd.DataFrame(
        {
            "role": role,
            "sample": sample,
            "class_index": ids,
            "class_name": names,
            "temperature": temp,
            "probability": probs.cpu().numpy(),
        }
    )


def logit_matching_limit(student_logits: Any, teacher_logits: Any) -> Tensor:
    """Per-sample limit of T²·KL(p_T ‖ q_T) as T → ∞: Σ_i (Δz_i − mean Δz)² / (2C), Δz = z_s − z_t.

    Hinton et al. 2015 (arXiv 1503.02531), §2.1: in the high-temperature limit distillation is
    equivalent to matching zero-mean logits. Returns a float64 tensor [N].
    """
    where = "logit_matching_limit"
    s = _logits("student_logits", student_logits, where)
    t = _logits("teacher_logits", teacher_logits, where)
    check_same_shape(s, t, where=where)
    if bool(torch.isinf(s).any() or torch.isinf(t).any()):
        raise ValueError(f"The logits of {where} must be finite: a masked (−inf) class has no logit-matching limit.")
    out = []
    for sl in _chunks(*s.shape):
        dz = s[sl].double() - t[sl].double()  # [n, C]
        out.append(((dz - dz.mean(-1, keepdim=True)) ** 2).sum(-1) / (2 * dz.shape[1]))
    return torch.cat(out)


def _kl_grad(s: Tensor, t: Tensor, temp: float) -> tuple[Tensor, Tensor]:
    """KL(p_T ‖ q_T) and T·‖q_T − p_T‖₂ per row of a chunk [n, C] (float64)."""
    logp, logq = torch.log_softmax(t.double() / temp, -1), torch.log_softmax(s.double() / temp, -1)  # [n, C]
    p, q = logp.exp(), logq.exp()
    term = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))  # 0·log 0 = 0
    return term.sum(-1), temp * torch.linalg.vector_norm(q - p, dim=-1)


def gradient_scale(student_logits: Any, teacher_logits: Any, temperatures: Sequence[float]) -> pd.DataFrame:
    """The student's KD gradient scale and loss against temperature (METHODS §2), means over samples.

    Columns: temperature; grad_norm = mean_n T·‖q_T − p_T‖₂ (the L2 norm of ∂(T²·KL(p_T ‖ q_T))/∂z_s);
    t2_kl = mean_n T²·KL(p_T ‖ q_T) (nats); limit = mean_n Σ(Δz_i − mean Δz)²/(2C), the logit-matching
    limit t2_kl approaches as T → ∞ (constant across rows; NaN when a logit is −inf).
    Source: Hinton, Vinyals & Dean 2015, arXiv 1503.02531, §2.1.
    """
    where = "gradient_scale"
    s = _logits("student_logits", student_logits, where)
    t = _logits("teacher_logits", teacher_logits, where)
    check_same_shape(s, t, where=where)
    temps = _temperatures(temperatures, where)
    finite = not bool(torch.isinf(s).any() or torch.isinf(t).any())
    limit = float(logit_matching_limit(s, t).mean()) if finite else float("nan")
    rows = []
    for temp in temps.tolist():
        parts = [_kl_grad(s[sl], t[sl], temp) for sl in _chunks(*s.shape)]  # streamed over rows
        kl, grad = torch.cat([k for k, _ in parts]), torch.cat([g for _, g in parts])  # [N] each
        rows.append(
            {
                "temperature": temp,
                "grad_norm": float(grad.mean()),
                "t2_kl": float((temp**2 * kl).mean()),
                "limit": limit,
            }
        )
    return pd.DataFrame(rows)


def sweep_pair(teacher: Any, student: Any, inputs: Any, temperatures: Sequence[float], labels: Any = None) -> dict:
    """Every soft-label result for a pair of kdcore ModelAdapters on one probe batch.

    Calls ``adapter.logits(inputs)`` once per model (causal LMs: positions are flattened to rows).
    Returns {"sweep": compare_sweeps(...), "gradient": gradient_scale(...),
    "classes": class_probabilities(...)}.
    """
    zt, zs = teacher.logits(inputs), student.logits(inputs)
    check_tensor("teacher.logits(inputs)", zt, where="sweep_pair", min_dim=2)
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1)
    zt, zs = zt.reshape(-1, zt.shape[-1]), zs.reshape(-1, zs.shape[-1])
    if labels is not None and bool((labels == -100).any()):
        keep = labels != -100
        zt, zs, labels = zt[keep], zs[keep], labels[keep]
    return {
        "sweep": compare_sweeps(zs, zt, temperatures, labels),
        "gradient": gradient_scale(zs, zt, temperatures),
        "classes": class_probabilities(zt, temperatures, student_logits=zs),
    }


# --------------------------------------------------------------------------- figures
def figure_class_probabilities(result: pd.DataFrame, *, top: int = 10) -> go.Figure:
    """Per-class probability curves against T, one panel per sample (teacher solid, student dashed).

    With more than ``top`` classes, only the ``top`` classes the teacher rates highest (largest teacher
    probability over the samples and temperatures) are drawn, and every other class of a sample is
    summed into one grey "the rest" curve (its exact mass: 1 − the classes drawn), so the figure has
    at most samples × (top + 1) × 2 traces whatever the number of classes."""
    samples = list(dict.fromkeys(result["sample"].tolist()))
    real = result[result["class_index"] != REST]
    classes = real.drop_duplicates("class_index")[["class_index", "class_name"]].values.tolist()
    n_classes = int(result.attrs.get("n_classes", len(classes)))
    if len(classes) > top:
        peak = real[real["role"] == "teacher"].groupby("class_index")["probability"].max()
        keep = set(peak.sort_values(ascending=False, kind="stable").index[:top].tolist())
        classes = [c for c in classes if c[0] in keep]
    kept = {int(c[0]) for c in classes}
    rest = result[~result["class_index"].isin(kept)]  # every class not drawn, the "rest" rows included
    rest = rest.groupby(["sample", "role", "temperature"], sort=False)["probability"].sum().reset_index()
    fig = make_subplots(rows=1, cols=len(samples), shared_yaxes=True, subplot_titles=[f"sample {s}" for s in samples])
    legend: set[str] = set()  # one legend entry per class (the first teacher curve drawn)

    def add(trace: go.Scatter, role: str, col: int) -> None:
        first = role == "teacher" and trace.name not in legend
        legend.add(trace.name) if first else None
        fig.add_trace(trace.update(showlegend=first), row=1, col=col)

    for col, sample in enumerate(samples, start=1):
        by = result[result["sample"] == sample]
        for k, name in classes:
            for role, dash in (("teacher", "solid"), ("student", "dash")):
                d = by[(by["class_index"] == k) & (by["role"] == role)]
                if not d.empty:
                    add(_class_trace(d, role, sample, str(name), _style.class_colour(int(k)), dash), role, col)
        for role, dash in (("teacher", "solid"), ("student", "dash")):
            d = rest[(rest["sample"] == sample) & (rest["role"] == role)]
            if not d.empty and len(classes) < n_classes:
                add(_class_trace(d, role, sample, "the rest", _style.NEUTRAL, dash), role, col)
    fig.update_xaxes(type="log", title_text="temperature T (log scale, unitless)")
    fig.update_yaxes(title_text="probability p_T(class)", row=1, col=1)
    roles = " (teacher solid, student dashed)" if (result["role"] == "student").any() else ""
    shown = f", the teacher's top {len(classes)} of {n_classes} classes + the rest" if len(classes) < n_classes else ""
    return _style.finish(fig, title=f"Class probabilities against temperature{roles}{shown}")


def _class_trace(d: pd.DataFrame, role: str, sample: int, name: str, colour: str, dash: str) -> go.Scatter:
    """One class's (or the rest's) probability against T for one sample and model."""
    return go.Scatter(
        x=d["temperature"],
        y=d["probability"],
        mode="lines+markers",
        name=name if name == "the rest" else f"class {name}",
        legendgroup=name,
        line={"color": colour, "dash": dash},
        marker={"size": 4},
        hovertemplate=(
            f"{role}, sample {sample}, {'' if name == 'the rest' else 'class '}{name}<br>T = %{{x:.3g}}"
            "<br>probability = %{y:.4f}<extra></extra>"
        ),
    )


_SWEEP_PANELS = (
    ("entropy", "entropy H (nats)"),
    ("effective_classes", "effective classes exp(H) (classes)"),
    ("target_prob", "target-class probability p_y"),
    ("dark_knowledge", "dark knowledge 1 − p_y"),
)


def figure_sweep(result: pd.DataFrame) -> go.Figure:
    """Entropy, effective classes, target probability and dark knowledge against T (2×2 panels).

    Takes ``temperature_sweep`` (teacher only) or ``compare_sweeps`` (with a ``role`` column:
    teacher and student overlaid). Max probability is drawn dotted in the target-probability panel.
    """
    if "role" not in result.columns:
        result = result.assign(role="teacher")
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[label for _, label in _SWEEP_PANELS],
        horizontal_spacing=0.1,
        vertical_spacing=0.16,
    )
    for i, (column, label) in enumerate(_SWEEP_PANELS):
        row, col = divmod(i, 2)
        for role, d in result.groupby("role", sort=False):
            colour = _style.role_colour(role)
            fig.add_trace(
                _style.temperature_trace(role, d, column, label, showlegend=i == 0),
                row=row + 1,
                col=col + 1,
            )
            if column == "target_prob":
                fig.add_trace(
                    go.Scatter(
                        x=d["temperature"],
                        y=d["max_prob"],
                        mode="lines",
                        name=f"{role} max probability",
                        legendgroup=role,
                        showlegend=False,
                        line={"color": colour, "dash": "dot"},
                        hovertemplate=f"{role}<br>T = %{{x:.3g}}<br>max probability = %{{y:.4f}}<extra></extra>",
                    ),
                    row=row + 1,
                    col=col + 1,
                )
        fig.update_yaxes(title_text=label, row=row + 1, col=col + 1)
        fig.update_xaxes(type="log", title_text="temperature T (log scale)", row=row + 1, col=col + 1)
    return _style.finish(fig, title="Soft labels against temperature (mean over samples)", height=620)


# (column, name, line, panel, hover) of figure_gradient_scale's lines.
_GRADIENT_LINES = (
    ("grad_norm", "gradient scale", {"color": _style.STUDENT}, 1, "T = %{x:.3g}<br>T·‖q − p‖₂ = %{y:.4f}"),
    ("t2_kl", "T²·KL", {"color": _style.TEACHER}, 2, "T = %{x:.3g}<br>T²·KL = %{y:.4f} nats"),
    (
        "limit",
        "logit-matching limit Σ(Δz − mean Δz)²/(2C)",
        {"color": _style.NEUTRAL, "dash": "dash"},
        2,
        "limit = %{y:.4f} nats",
    ),
)


def figure_gradient_scale(result: pd.DataFrame) -> go.Figure:
    """Left: the student's KD gradient scale T·‖q_T − p_T‖₂. Right: T²·KL and its logit-matching limit."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["gradient scale T·‖q_T − p_T‖₂", "T²·KL(p_T ‖ q_T) and its T → ∞ limit"]
    )
    for column, name, line, col, hover in _GRADIENT_LINES:
        trace = go.Scatter(
            x=result["temperature"],
            y=result[column],
            mode="lines" if column == "limit" else "lines+markers",
            name=name,
            line=line,
            hovertemplate=hover + "<extra></extra>",
        )
        fig.add_trace(trace, row=1, col=col)
    fig.update_xaxes(type="log", title_text="temperature T (log scale)")
    fig.update_yaxes(title_text="gradient L2 norm (per logit, unitless)", row=1, col=1)
    fig.update_yaxes(title_text="T²·KL (nats)", row=1, col=2)
    return _style.finish(fig, title="Student KD gradient and loss against temperature (mean over samples)")
