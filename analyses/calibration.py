"""Calibration: does a model's confidence match how often it is right? (METHODS §10)

What the view shows
-------------------
Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017 (arXiv
1706.04599). Confidence is the top-class probability. The samples are put in M = 15 equal-width
bins, bin m holding (m−1)/M < confidence ≤ m/M, and each bin's accuracy is set against its mean
confidence.
- **Reliability diagram** (teacher and student side by side): bars are each bin's accuracy, the
  diagonal is perfect calibration, the markers are the mean confidence; the lower panels count the
  samples per bin. Bars below the diagonal mean over-confidence, above it under-confidence. Look at
  the bins that hold many samples: a gap in an almost empty bin says little.
- **Scores**: ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| (the count-weighted gap), MCE (the largest
  gap over non-empty bins), NLL (mean −log p_y, nats) and the Brier score (mean over samples of
  Σ_c (p_c − 1[c = y])², between 0 and 2). Distillation at T > 1 often leaves a student better
  calibrated than one trained on hard labels; a student much more over-confident than its teacher
  has not taken the teacher's soft labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from kdcore import metrics
from kdcore.validation import check_array, check_int_range, check_labels

from . import _style

__all__ = [
    "expected_calibration_error",
    "reliability_table",
    "CalibrationResult",
    "calibration",
    "calibration_from_logits",
    "compare_calibration",
    "pair_calibration",
    "metrics_table",
    "figure_reliability",
    "figure_metrics",
]


CHUNK_LOGITS = 2**22  # calibration_from_logits: logits per chunk of rows (32 MB in float64)


# --------------------------------------------------------------------------- inputs
def _probs_labels(probs: Any, labels: Any, n_bins: int, where: str) -> tuple[Tensor, Tensor, int]:
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    p, y = metrics.check_probs_labels(probs, labels, where=where)  # [N, C] float64, [N]
    m = check_int_range("n_bins", n_bins, 1, 10_000, where=where)
    return p, y, m


# --------------------------------------------------------------------------- tables and scores
def reliability_table(probs: Any, labels: Any, *, n_bins: int = 15) -> pd.DataFrame:
    """One row per bin: bin, lower, upper, count, share (count/n), accuracy, confidence, gap (acc − conf).

    Bin m holds (m−1)/M < confidence ≤ m/M (Guo et al. 2017, arXiv 1706.04599). accuracy, confidence
    and gap are NaN for an empty bin (there is nothing to measure); every bin is listed.
    """
    p, y, m = _probs_labels(probs, labels, n_bins, "reliability_table")
    bins = metrics.reliability_bins(p, y, n_bins=m)  # the binning lives in kdcore.metrics (the doctor uses it too)
    return _table(bins, p.shape[0])


def _table(bins: dict[str, Tensor], n: int) -> pd.DataFrame:
    """reliability_table's rows from kdcore.metrics' bins (count, accuracy, confidence [M] each)."""
    count, acc, cnf = bins["count"], bins["accuracy"], bins["confidence"]  # [M] each, NaN in empty bins
    m = count.shape[0]
    k = np.arange(m)
    return pd.DataFrame(
        {
            "bin": k + 1,
            "lower": k / m,
            "upper": (k + 1) / m,
            "count": count.cpu().numpy().astype(int),
            "share": (count / n).cpu().numpy(),
            "accuracy": acc.cpu().numpy(),
            "confidence": cnf.cpu().numpy(),
            "gap": (acc - cnf).cpu().numpy(),
        }
    )


def expected_calibration_error(probs: Any, labels: Any, *, n_bins: int = 15) -> float:
    """ECE = Σ_m (|B_m|/n)·|acc(B_m) − conf(B_m)| over M equal-width confidence bins (METHODS §10).

    Source: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, arXiv 1706.04599.
    """
    p, y, m = _probs_labels(probs, labels, n_bins, "expected_calibration_error")
    return metrics.expected_calibration_error(p, y, n_bins=m)  # the one ECE (the doctor uses it too)


@dataclass
class CalibrationResult:
    """Scores and reliability table of one model on one sample set."""

    ece: float  # expected calibration error (0 = calibrated)
    mce: float  # largest |acc − conf| over non-empty bins
    nll: float  # mean −log p_y (nats); inf when some p_y is 0
    brier: float  # mean Σ_c (p_c − 1[c = y])², in [0, 2]
    accuracy: float  # share of samples whose top class is the label
    n: int  # number of samples
    table: pd.DataFrame = field(repr=False)  # reliability_table(...)


def _result(p: Tensor, y: Tensor, logp_y: Tensor, n_bins: int) -> CalibrationResult:
    table = reliability_table(p, y, n_bins=n_bins)
    gaps = table.loc[table["count"] > 0, "gap"].abs()
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)  # [N, C]
    return CalibrationResult(
        ece=metrics.expected_calibration_error(p, y, n_bins=n_bins),
        mce=float(gaps.max()),
        nll=float(-logp_y.mean()),
        brier=float(((p - onehot) ** 2).sum(1).mean()),
        accuracy=metrics.accuracy(p, y),
        n=int(p.shape[0]),
        table=table,
    )


def calibration(probs: Any, labels: Any, *, n_bins: int = 15) -> CalibrationResult:
    """ECE, MCE, NLL, Brier, accuracy and the reliability table from probabilities [N, C]."""
    p, y, m = _probs_labels(probs, labels, n_bins, "calibration")
    logp_y = torch.log(p.gather(1, y[:, None])[:, 0])  # −inf where p_y = 0: NLL is then inf
    return _result(p, y, logp_y, m)


def calibration_from_logits(logits: Any, labels: Any, *, n_bins: int = 15) -> CalibrationResult:
    """``calibration`` of softmax(logits); NLL from log-softmax, so it stays finite and exact.

    Streamed over chunks of rows in float64 (a large vocabulary never gets an [N, V] float64 copy):
    each row gives its confidence, whether its top class is right, log p_y and its Brier term
    Σ_c p_c² − 2 p_y + 1."""
    where = "calibration_from_logits"
    is_float = isinstance(logits, Tensor) and logits.is_floating_point()
    z = check_array("logits", logits, where=where, dims=2, dtype=logits.dtype if is_float else torch.float64)
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    y = check_labels(labels.to(z.device), z.shape[0], z.shape[1], where=where)  # [N]
    m = check_int_range("n_bins", n_bins, 1, 10_000, where=where)
    conf, right, logp_y, brier = [], [], [], []
    per = max(1, CHUNK_LOGITS // max(z.shape[1], 1))
    for i in range(0, z.shape[0], per):
        logp = torch.log_softmax(z[i : i + per].double(), dim=1)  # [n, C]
        p, yc = logp.exp(), y[i : i + per]
        top = p.max(1)
        lp_y = logp.gather(1, yc[:, None])[:, 0]
        conf.append(top.values)
        right.append(top.indices == yc)
        logp_y.append(lp_y)
        brier.append((p * p).sum(1) - 2 * lp_y.exp() + 1)
    bins = metrics.confidence_bins(torch.cat(conf), torch.cat(right), n_bins=m)
    table = _table(bins, z.shape[0])
    gaps = table.loc[table["count"] > 0, "gap"].abs()
    return CalibrationResult(
        ece=metrics.calibration_error_from_bins(bins),
        mce=float(gaps.max()),
        nll=float(-torch.cat(logp_y).mean()),
        brier=float(torch.cat(brier).mean()),
        accuracy=float(torch.cat(right).double().mean()),
        n=int(z.shape[0]),
        table=table,
    )


def compare_calibration(
    student_logits: Any, teacher_logits: Any, labels: Any, *, n_bins: int = 15, baseline_logits: Any = None
) -> dict[str, CalibrationResult]:
    """Calibration of teacher and student (and the student trained alone, if given) on the same samples."""
    out = {
        "teacher": calibration_from_logits(teacher_logits, labels, n_bins=n_bins),
        "student": calibration_from_logits(student_logits, labels, n_bins=n_bins),
    }
    if baseline_logits is not None:
        out["baseline"] = calibration_from_logits(baseline_logits, labels, n_bins=n_bins)
    return out


def pair_calibration(
    teacher: Any, student: Any, inputs: Any, labels: Any, *, n_bins: int = 15, baseline: Any = None
) -> dict[str, CalibrationResult]:
    """``compare_calibration`` on the logits of kdcore ModelAdapters (``adapter.logits(inputs)``)."""
    return compare_calibration(
        student.logits(inputs),
        teacher.logits(inputs),
        labels,
        n_bins=n_bins,
        baseline_logits=None if baseline is None else baseline.logits(inputs),
    )


def metrics_table(results: Mapping[str, CalibrationResult]) -> pd.DataFrame:
    """One row per model: ece, mce, nll (nats), brier, accuracy, n."""
    return pd.DataFrame(
        [
            {"model": k, "ece": r.ece, "mce": r.mce, "nll": r.nll, "brier": r.brier, "accuracy": r.accuracy, "n": r.n}
            for k, r in results.items()
        ]
    )


# --------------------------------------------------------------------------- figures
def _as_mapping(results: Any) -> dict[str, CalibrationResult]:
    if isinstance(results, CalibrationResult):
        return {"model": results}
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "The 'results' argument must be a CalibrationResult or a non-empty mapping "
            f"name -> CalibrationResult. Got {type(results).__name__} instead."
        )
    return dict(results)


def _bin_bars(t: pd.DataFrame, column: str, name: str, marker: dict, hover: str) -> go.Bar:
    """One bar per confidence bin of the table `t` (as wide as the bin) of height `column`; the hover reads the
    customdata [lower, upper, count, confidence, gap] of each bin."""
    return go.Bar(
        x=(t["lower"] + t["upper"]) / 2,
        y=t[column],
        width=t["upper"] - t["lower"],
        name=name,
        marker=marker,
        customdata=np.stack([t["lower"], t["upper"], t["count"], t["confidence"], t["gap"]], axis=1),
        hovertemplate=hover,
    )


def figure_reliability(results: Any) -> go.Figure:
    """Reliability diagrams side by side (one column per model), bin counts underneath."""
    res = _as_mapping(results)
    names = list(res)
    fig = make_subplots(
        rows=2,
        cols=len(names),
        row_heights=[0.72, 0.28],
        shared_xaxes=True,
        vertical_spacing=0.06,
        horizontal_spacing=0.07,
        subplot_titles=[f"<b>{k}</b><br>ECE {r.ece:.3f} · accuracy {r.accuracy:.1%}" for k, r in res.items()],
    )
    for col, (name, r) in enumerate(res.items(), start=1):
        t, first, extra = r.table, col == 1, "<extra>" + name + "</extra>"
        bins = "%{customdata[0]:.3f} < confidence ≤ %{customdata[1]:.3f}"
        hover = (
            bins + "<br>samples: %{customdata[2]}<br>accuracy: %{y:.3f}<br>mean confidence: %{customdata[3]:.3f}"
            "<br>gap (acc − conf): %{customdata[4]:+.3f}" + extra
        )
        line = {"color": "white", "width": 0.5}
        accuracy = _bin_bars(
            t, "accuracy", "accuracy per bin", {"color": _style.role_colour(name), "line": line}, hover
        )
        confidence = go.Scatter(
            x=(t["lower"] + t["upper"]) / 2,
            y=t["confidence"],
            mode="markers",
            name="mean confidence per bin",
            marker={"color": "black", "symbol": "diamond"},
            hovertemplate="mean confidence: %{y:.3f}" + extra,
        )
        diagonal = _style.line_trace(
            [0, 1], [0, 1], "perfect calibration", _style.NEUTRAL, dash="dash", hoverinfo="skip"
        )
        count = _bin_bars(t, "count", "samples per bin", {"color": _style.NEUTRAL}, bins + "<br>samples: %{y}" + extra)
        traces = (accuracy, confidence, diagonal, count)
        for trace, group in zip(traces, ("acc", "conf", "diag", "count")):
            trace.update(legendgroup=group, showlegend=first)
        fig.add_traces(traces, rows=[1, 1, 1, 2], cols=col)
        fig.update_yaxes(range=[0, 1.06], row=1, col=col, title_text="accuracy (fraction correct)" if first else None)
        fig.update_yaxes(row=2, col=col, title_text="samples (count)" if first else None)
        fig.update_xaxes(range=[0, 1], row=2, col=col, title_text="confidence = max probability")
        fig.update_xaxes(range=[0, 1], row=1, col=col)
    fig.update_xaxes(ticks="outside", ticklen=4)  # the x and y "0" of the count panels apart
    fig.update_yaxes(ticks="outside", ticklen=4)
    _style.finish(fig, title="Reliability diagram (Guo et al. 2017)", height=580)
    fig.update_layout(margin={"t": 100})  # two-line panel titles under the title and legend
    return fig


def figure_metrics(results: Any) -> go.Figure:
    """ECE, MCE, NLL and Brier per model as grouped bars (lower is better for all four)."""
    res = _as_mapping(results)
    panels = (
        ("ece", "ECE (fraction)"),
        ("mce", "MCE (fraction)"),
        ("nll", "NLL (nats)"),
        ("brier", "Brier score (0–2)"),
    )
    fig = make_subplots(rows=1, cols=4, subplot_titles=[label for _, label in panels])
    for col, (key, label) in enumerate(panels, start=1):
        for name, r in res.items():
            fig.add_trace(
                go.Bar(
                    x=[name],
                    y=[getattr(r, key)],
                    name=name,
                    legendgroup=name,
                    showlegend=(col == 1),
                    marker={"color": _style.role_colour(name)},
                    hovertemplate=f"{name}<br>{label}: %{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    # each panel's title names its measure and unit: no y titles to crowd the neighbouring panel
    fig.update_xaxes(tickangle=-30)
    return _style.finish(fig, title="Calibration scores per model (lower is better)")
