"""One look for every figure: colours for teacher and student, and a layout helper.

Figures are built with the plotly template left to the caller (tests set it to None), so the style
here only sets what carries meaning: titles, axis labels with units, legend, hover.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEACHER = "#1f4e79"  # dark blue
STUDENT = "#d9822b"  # orange: the distilled student
BASELINE = "#2a9d5c"  # green: the student trained without a teacher (the baseline)
NEUTRAL = "#7f7f7f"  # grey: references that are no model (diagonals, counts, limits)
ROLE_COLOURS = {"teacher": TEACHER, "student": STUDENT, "baseline": BASELINE}


def role_colour(name: str) -> str:
    """The colour of a model by its name in a figure: any name saying baseline / alone / plain labels is
    the baseline, else teacher, else student (e.g. "student baseline" -> BASELINE, "distilled student" -> STUDENT);
    names that are no model get NEUTRAL."""
    low = name.lower()
    if any(w in low for w in ("baseline", "alone", "plain labels", "without")):
        return BASELINE
    if "teacher" in low:
        return TEACHER
    return STUDENT if "student" in low else NEUTRAL


def line_trace(
    x: Any,
    y: Any,
    name: str,
    colour: str,
    *,
    mode: str = "lines",
    dash: str | None = None,
    width: float | None = None,
    **extra: Any,
) -> go.Scatter:
    """A named line (``mode`` "lines" or "lines+markers") in one colour; ``dash`` and ``width`` enter the
    line only when given; ``extra`` goes to go.Scatter as it is (legendgroup, hovertemplate, …)."""
    line: dict[str, Any] = {"color": colour}
    if dash is not None:
        line["dash"] = dash
    if width is not None:
        line["width"] = width
    return go.Scatter(x=x, y=y, mode=mode, name=name, line=line, **extra)


def temperature_trace(role: str, d: Any, column: str, label: str, *, showlegend: bool) -> go.Scatter:
    """One model's `column` of a temperature sweep `d` (a DataFrame with a "temperature" column) against T,
    in the role's colour and legend group; the hover names T and `label`."""
    hover = f"{role}<br>T = %{{x:.3g}}<br>{label} = %{{y:.4f}}<extra></extra>"
    return line_trace(
        d["temperature"],
        d[column],
        role,
        role_colour(role),
        mode="lines+markers",
        legendgroup=role,
        showlegend=showlegend,
        hovertemplate=hover,
    )


def panels_in_a_row(
    titles: Sequence[str], *, widths: Sequence[float] | None = None, spacing: float | None = None
) -> go.Figure:
    """A figure of len(titles) panels side by side (one row), each under its title; ``widths``: the columns'
    shares; ``spacing``: the gap between panels (None: plotly's default, 0.2 / the number of panels)."""
    return make_subplots(
        rows=1, cols=len(titles), column_widths=widths, horizontal_spacing=spacing, subplot_titles=list(titles)
    )


SEQUENTIAL = "Viridis"  # heatmaps of magnitudes (CKA, attention)
DIVERGING = "RdBu"  # signed differences


def finish(
    fig: go.Figure,
    *,
    title: str,
    x: str | None = None,
    y: str | None = None,
    height: int | None = None,
    legend: bool = True,
) -> go.Figure:
    """Set the title, axis titles and legend placement that every figure must have."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        showlegend=legend,
        hovermode="closest",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    if legend:
        fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 1, "xanchor": "right"})
    if x is not None:
        fig.update_xaxes(title_text=x)
    if y is not None:
        fig.update_yaxes(title_text=y)
    if height is not None:
        fig.update_layout(height=height)
    return fig


# ---- added by analyses-core: per-class colours (readable for up to ~24 classes, then they repeat)
CLASS_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#9c9ede",
    "#cedb9c",
    "#e7ba52",
    "#e7969c",
)


def class_colour(index: int) -> str:
    """The colour of class ``index`` in every per-class figure."""
    return CLASS_PALETTE[index % len(CLASS_PALETTE)]


def image_trace(img, *, name: str = "input"):
    """An image [C, H, W] (torch or numpy) scaled to [0, 1]: RGB as ``go.Image``, one channel as a grey
    heatmap. Values outside [0, 1] are min-max scaled first."""
    import numpy as np

    z = np.asarray(img.detach().cpu() if hasattr(img, "detach") else img, dtype=np.float64)  # [C, H, W]
    lo, hi = z.min(), z.max()
    if lo < 0 or hi > 1:
        z = (z - lo) / (hi - lo) if hi > lo else np.zeros_like(z)
    if z.shape[0] == 3:
        return go.Image(
            z=(z.transpose(1, 2, 0) * 255).round().astype(np.uint8),
            name=name,
            hovertemplate=f"x %{{x}}, y %{{y}}<extra>{name}</extra>",
        )
    return go.Heatmap(
        z=z[0],
        colorscale=[[0.0, "black"], [1.0, "white"]],
        showscale=False,
        name=name,
        hovertemplate=f"x %{{x}}, y %{{y}}<br>%{{z:.2f}}<extra>{name}</extra>",
    )


def figure_by_type(
    result: Any, builders: dict[type, Callable[..., go.Figure]], *, where: str, expected: str, **kwargs: Any
) -> go.Figure:
    """The figure of the first builder whose result type `result` is (keyword arguments pass through).

    builders: {result type: figure function}, tried in order; expected: those types in words,
    for the error when `result` is none of them."""
    for kind, build in builders.items():
        if isinstance(result, kind):
            return build(result, **kwargs)
    raise ValueError(f"The 'result' argument of {where} must be {expected}. Got {type(result).__name__} instead.")
