"""The method leaderboard as a bar chart, like the tables of the methods' papers.

What the view shows
-------------------
For each method (kdcore.jobs.leaderboard: every method on the pair's recipe budget, over seeds), two
bars: the mean over seeds of the validation metric at the best epoch and at the final epoch, each
with an error bar of ± one standard deviation over seeds (ddof = 1; none for a single seed). The
dashed line is the student alone (`ce`) at its best epoch; above each method's best-epoch bar, its
gain over the student alone (mean of the per-seed paired differences; positive is better, also for
a loss). The methods are ordered by rank (1: the best mean at the best epoch), the student alone first.

What to look for
----------------
A method helps when its bar clears the dashed line by more than the error bars' overlap: a gain
smaller than the seeds' spread is noise at this budget. A final-epoch bar well below the best-epoch
bar means the method overfits or is unstable late in training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import _style

__all__ = ["figure", "ordered"]

FLOOR = "ce"  # the student alone, as the leaderboard names it
_NEEDED = ("method", "metric", "best_mean", "best_std", "final_mean", "final_std", "gain_mean", "rank")
FINAL_COLOUR = "#f2c08f"  # the final epoch: a lighter shade of the student's orange
_METRIC_LABELS = {"val_acc": "validation accuracy", "val_loss": "validation loss (lower is better)"}


def _check(table: pd.DataFrame) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            "The 'table' argument of analyses.leaderboard.figure must be the leaderboard table (a DataFrame "
            f"from kdcore.jobs.leaderboard.compare_methods(...).table). Got {type(table).__name__} instead."
        )
    missing = [c for c in _NEEDED if c not in table.columns]
    if missing:
        raise ValueError(
            f"The 'table' argument of analyses.leaderboard.figure lacks the columns {missing}: pass "
            "compare_methods(...).table or leaderboard_status(...)[0].table unchanged."
        )


def ordered(table: pd.DataFrame) -> pd.DataFrame:
    """The rows the chart shows, in its order: the student alone first, then by rank (methods
    without a finished seed are left out)."""
    _check(table)
    shown = table[table["best_mean"].notna()].copy()
    shown["_floor"] = shown["method"] != FLOOR
    shown["_rank"] = pd.to_numeric(shown["rank"], errors="coerce")
    return shown.sort_values(["_floor", "_rank"], kind="stable").drop(columns=["_floor", "_rank"])


def _bars(rows: pd.DataFrame, which: str, name: str, colour: str, fmt: str) -> go.Bar:
    """One bar per method: mean of `which` (best / final) with ± std error bars (none where NaN)."""
    std = rows[f"{which}_std"].to_numpy(dtype=float)
    return go.Bar(
        x=rows["method"].tolist(),
        y=rows[f"{which}_mean"].to_numpy(dtype=float),
        name=name,
        marker={"color": colour},
        error_y={"type": "data", "array": np.nan_to_num(std, nan=0.0), "visible": True, "color": "#333333"},
        customdata=std,
        hovertemplate=f"%{{x}}<br>{name}: %{{y:{fmt}}} ± %{{customdata:{fmt}}}<extra></extra>",
    )


def _y_range(rows: pd.DataFrame, accuracy: bool) -> list[float]:
    """The y axis zoomed to the bars' tops and error bars, so that small gaps stay visible."""
    means = rows[["best_mean", "final_mean"]].to_numpy(dtype=float)
    stds = np.nan_to_num(rows[["best_std", "final_std"]].to_numpy(dtype=float))
    lo, hi = np.nanmin(means - stds), np.nanmax(means + stds)
    pad = max(hi - lo, 0.01) * 0.25
    low, high = lo - 2 * pad, hi + 1.5 * pad  # room above for the gain labels
    return [max(low, 0.0), min(high, 1.05)] if accuracy else [max(low, 0.0), high]


def figure(table: pd.DataFrame, *, pair: str | None = None) -> go.Figure:
    """Bars of mean ± std at the best and the final epoch per method, the student alone's best-epoch
    line, and each method's gain over it written above its bars (percentage points for accuracy). table: compare_methods(...).table."""
    rows = ordered(table)
    if rows.empty:
        raise ValueError("The leaderboard has no finished run yet: there is nothing to draw.")
    metric = str(rows["metric"].iloc[0])
    accuracy = metric == "val_acc"
    fmt = ".2%" if accuracy else ".4f"
    fig = go.Figure(
        [
            _bars(rows, "best", "best epoch", _style.STUDENT, fmt),
            _bars(rows, "final", "final epoch", FINAL_COLOUR, fmt),
        ]
    )
    floor = rows[rows["method"] == FLOOR]
    if len(floor):
        level = float(floor["best_mean"].iloc[0])
        line = {"color": _style.BASELINE, "dash": "dash", "width": 2}
        fig.add_hline(y=level, line=line)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="student alone (best epoch)", line=line))
    for r in rows[rows["method"] != FLOOR].itertuples():
        if np.isnan(r.gain_mean):
            continue
        tops = [m + (0.0 if np.isnan(s) else s) for m, s in ((r.best_mean, r.best_std), (r.final_mean, r.final_std))]
        text = f"{r.gain_mean * 100:+.1f} pts" if accuracy else f"{r.gain_mean:+.4f}"
        fig.add_annotation(x=r.method, y=np.nanmax(tops), text=text, showarrow=False, yshift=12, font={"size": 12})
    where = f" on {pair}" if pair else ""
    _style.finish(
        fig,
        title=f"Method leaderboard{where}: mean ± std over seeds; labels: gain over the student alone",
        x="method",
        y=_METRIC_LABELS.get(metric, metric.replace("_", " ")),
        height=440,
    )
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=_y_range(rows, accuracy), tickformat=".0%" if accuracy else None)
    return fig
