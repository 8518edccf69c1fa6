"""Figures for the doctor's evidence: `figure(finding_or_data) -> go.Figure` (pure; no Streamlit).

A finding carries plain numbers (`kdcore.doctor.FigureData`); this draws them: "lines" (a curve per
series, an optional vertical marker such as the run's temperature), "bars" (grouped bars) and
"reliability" (accuracy per confidence bin against the diagonal, Guo et al. 2017, arXiv 1706.04599).
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from kdcore.doctor.findings import FigureData, Finding

from . import _style

__all__ = ["figure", "severity_counts_figure"]
_PALETTE = (_style.STUDENT, _style.TEACHER, _style.BASELINE, "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_ROLE = {"teacher": _style.TEACHER, "student alone": _style.BASELINE, "distilled student": _style.STUDENT}


def _data(item: Any) -> FigureData:
    data = item.figure if isinstance(item, Finding) else item
    if not isinstance(data, FigureData):
        raise ValueError(
            f"The 'item' argument of analyses.doctor.figure must be a Finding with a figure or a "
            f"FigureData. Got {type(item).__name__}"
            + (" without a figure" if isinstance(item, Finding) else "")
            + " instead."
        )
    for name, ys in data.series.items():
        if len(ys) != len(data.x):
            raise ValueError(
                f"Series {name!r} of the figure {data.title!r} has {len(ys)} values for {len(data.x)} "
                f"x values; they must match."
            )
    return data


def _clean(ys: list) -> list:
    return [None if y is None or (isinstance(y, float) and not math.isfinite(y)) else y for y in ys]


def figure(item: Finding | FigureData) -> go.Figure:
    """The evidence figure of a finding (or of its FigureData)."""
    d = _data(item)
    fig = go.Figure()
    if d.kind == "lines":
        for i, (name, ys) in enumerate(d.series.items()):
            fig.add_trace(
                go.Scatter(
                    x=list(d.x),
                    y=_clean(ys),
                    mode="lines+markers",
                    name=name,
                    line={"color": _PALETTE[i % len(_PALETTE)]},
                    yaxis="y2" if name in d.right else "y",
                )
            )
        if d.marker_x is not None:
            fig.add_vline(
                x=d.marker_x,
                line_dash="dash",
                line_color="#444",
                annotation_text=f"run: {d.marker_x:g}",
                annotation_position="top",
            )
        if d.log_x:
            fig.update_xaxes(type="log")
    elif d.kind == "bars":
        for i, (name, ys) in enumerate(d.series.items()):
            fig.add_trace(
                go.Bar(
                    x=[str(x) for x in d.x],
                    y=_clean(ys),
                    name=name,
                    marker_color=_ROLE.get(name, _PALETTE[i % len(_PALETTE)]),
                )
            )
        fig.update_layout(barmode="group")
    elif d.kind == "reliability":
        width = (d.x[1] - d.x[0]) if len(d.x) > 1 else 1.0
        fig.add_trace(
            go.Bar(
                x=list(d.x),
                y=_clean(d.series["accuracy"]),
                width=width * 0.95,
                name="accuracy",
                marker_color=_style.TEACHER,
                customdata=d.series.get("count"),
                hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.3f}<br>%{customdata} samples",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=list(d.x),
                y=_clean(d.series["confidence"]),
                mode="markers",
                name="mean confidence",
                marker={"color": _style.STUDENT, "symbol": "diamond"},
            )
        )
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot", "color": "#888"})
        )
        fig.update_xaxes(range=[0, 1])
        fig.update_yaxes(range=[0, 1])
    else:
        raise ValueError(f"The figure kind must be 'lines', 'bars' or 'reliability'. Got {d.kind!r} instead.")
    fig = _style.finish(fig, title=d.title, x=d.x_title or None, y=d.y_title or None)
    if d.kind == "lines" and d.right:  # quantities of another scale (a loss beside an accuracy): their own axis
        fig.update_layout(
            yaxis2={"title": {"text": d.right_title}, "overlaying": "y", "side": "right", "showgrid": False},
            legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.3, "yanchor": "top"},  # off both axes
            margin={"b": 110},
        )
    return fig


def severity_counts_figure(counts: dict[str, int]) -> go.Figure:
    """Bars: how many findings of each severity (error, warning, info)."""
    colours = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
    names = [s for s in ("error", "warning", "info")]
    fig = go.Figure(go.Bar(x=names, y=[int(counts.get(s, 0)) for s in names], marker_color=[colours[s] for s in names]))
    return _style.finish(fig, title="Findings by severity", x="severity", y="findings", legend=False)
