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

from collections.abc import Sequence
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
    return x.detach().to(torch.float64)


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
    logp = torch.log_softmax(logits / temperature, dim=-1)  # [N, C]
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))  # 0·log 0 = 0
    entropy = -plogp.sum(-1)  # [N]
    is_target = torch.nn.functional.one_hot(targets, logits.shape[1]).bool()  # [N, C]
    # non-target mass summed in log space: exact when p_y is close to 1 (no 1 − p_y rounding)
    dark = torch.logsumexp(logp.masked_fill(is_target, -torch.inf), dim=-1).exp()  # [N]
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
        stats = {k: v.cpu().numpy() for k, v in _per_sample(z, y, t).items()}
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
) -> pd.DataFrame:
    """Each class's probability against temperature for chosen samples (long format).

    Columns: role ("teacher"/"student"), sample, class_index, class_name, temperature, probability.
    ``samples`` are row indices (default: the first three); ``class_names`` label the classes.
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
    idx = list(range(min(3, n))) if samples is None else [int(i) for i in samples]
    if not idx or any(i < 0 or i >= n for i in idx):
        raise ValueError(
            f"The 'samples' parameter of {where} must hold row indices in [0, {n - 1}]. Got {idx} instead."
        )
    names = [str(k) for k in range(c)] if class_names is None else [str(k) for k in class_names]
    if len(names) != c:
        raise ValueError(
            f"The 'class_names' parameter of {where} must name {c} classes. Got {len(names)} names instead."
        )
    frames = []
    for role, z in models.items():
        for temp in temps.tolist():
            p = torch.softmax(z[idx] / temp, dim=-1).cpu().numpy()  # [S, C]
            frames.append(
                pd.DataFrame(
                    {
                        "role": role,
                        "sample": np.repeat(idx, c),
                        "class_index": np.tile(np.arange(c), len(idx)),
                        "class_name": np.tile(names, len(idx)),
                        "temperature": temp,
                        "probability": p.reshape(-1),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


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
    dz = s - t  # [N, C]
    return ((dz - dz.mean(-1, keepdim=True)) ** 2).sum(-1) / (2 * dz.shape[1])


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
        logp, logq = torch.log_softmax(t / temp, -1), torch.log_softmax(s / temp, -1)  # [N, C]
        p, q = logp.exp(), logq.exp()
        term = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))  # 0·log 0 = 0
        kl = term.sum(-1)  # [N]
        grad = temp * torch.linalg.vector_norm(q - p, dim=-1)  # [N]
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
    probability over the samples and temperatures) are drawn, so the legend stays readable."""
    samples = list(dict.fromkeys(result["sample"].tolist()))
    classes = result.drop_duplicates("class_index")[["class_index", "class_name"]].values.tolist()
    n_classes = len(classes)
    if n_classes > top:
        peak = result[result["role"] == "teacher"].groupby("class_index")["probability"].max()
        keep = set(peak.sort_values(ascending=False, kind="stable").index[:top].tolist())
        classes = [c for c in classes if c[0] in keep]
    fig = make_subplots(rows=1, cols=len(samples), shared_yaxes=True, subplot_titles=[f"sample {s}" for s in samples])
    for col, sample in enumerate(samples, start=1):
        for k, name in classes:
            colour = _style.class_colour(int(k))
            for role, dash in (("teacher", "solid"), ("student", "dash")):
                d = result[(result["sample"] == sample) & (result["class_index"] == k) & (result["role"] == role)]
                if d.empty:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=d["temperature"],
                        y=d["probability"],
                        mode="lines+markers",
                        name=f"class {name}",
                        legendgroup=f"class {name}",
                        showlegend=(col == 1 and role == "teacher"),
                        line={"color": colour, "dash": dash},
                        marker={"size": 4},
                        hovertemplate=(
                            f"{role}, sample {sample}, class {name}<br>T = %{{x:.3g}}"
                            "<br>probability = %{y:.4f}<extra></extra>"
                        ),
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(type="log", title_text="temperature T (log scale, unitless)")
    fig.update_yaxes(title_text="probability p_T(class)", row=1, col=1)
    roles = " (teacher solid, student dashed)" if (result["role"] == "student").any() else ""
    shown = f", the teacher's top {len(classes)} of {n_classes} classes" if len(classes) < n_classes else ""
    return _style.finish(fig, title=f"Class probabilities against temperature{roles}{shown}")


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


def figure_gradient_scale(result: pd.DataFrame) -> go.Figure:
    """Left: the student's KD gradient scale T·‖q_T − p_T‖₂. Right: T²·KL and its logit-matching limit."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["gradient scale T·‖q_T − p_T‖₂", "T²·KL(p_T ‖ q_T) and its T → ∞ limit"]
    )
    fig.add_trace(
        go.Scatter(
            x=result["temperature"],
            y=result["grad_norm"],
            mode="lines+markers",
            name="gradient scale",
            line={"color": _style.STUDENT},
            hovertemplate="T = %{x:.3g}<br>T·‖q − p‖₂ = %{y:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=result["temperature"],
            y=result["t2_kl"],
            mode="lines+markers",
            name="T²·KL",
            line={"color": _style.TEACHER},
            hovertemplate="T = %{x:.3g}<br>T²·KL = %{y:.4f} nats<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Scatter(
            x=result["temperature"],
            y=result["limit"],
            mode="lines",
            name="logit-matching limit Σ(Δz − mean Δz)²/(2C)",
            line={"color": _style.NEUTRAL, "dash": "dash"},
            hovertemplate="limit = %{y:.4f} nats<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(type="log", title_text="temperature T (log scale)")
    fig.update_yaxes(title_text="gradient L2 norm (per logit, unitless)", row=1, col=1)
    fig.update_yaxes(title_text="T²·KL (nats)", row=1, col=2)
    return _style.finish(fig, title="Student KD gradient and loss against temperature (mean over samples)")
