"""Figures and tables of the experiments' reports (kdcore/jobs/experiment.py, capacity_study.py,
across.py, repro.py): pure functions over the report dicts the store keeps, no Streamlit.

    plan_curves(report)        # validation metric per epoch, mean over seeds (± std band), one line per variant
    sweep_figure(report)       # each sweep's score with its 95 % interval; the floor as a band; the winner marked
    capacity_heatmap(report)   # student size × T, colour = gain over the same-size student alone, text = interval
    across_figure(report)      # gain over the student alone per pair, mean ± std
    report_tables(report)      # {title: DataFrame}: what the page and the HTML file show
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses._style import BASELINE, CLASS_PALETTE, DIVERGING, NEUTRAL, STUDENT, finish, line_trace
from kdcore.validation import InvalidParameterError

KINDS = ("plan", "capacity", "across", "repro")


def _check(report: Any, kind: str | None = None) -> dict:
    if not isinstance(report, dict) or report.get("kind") not in KINDS:
        raise InvalidParameterError(
            "The 'report' argument must be an experiment's report (a dict with 'kind' one of "
            f"{KINDS}, as run_plan / run_capacity / run_across / run_repro return). Got {type(report).__name__}."
        )
    if kind is not None and report["kind"] != kind:
        raise InvalidParameterError(f"This figure needs a {kind!r} report. Got a {report['kind']!r} report.")
    return report


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def plan_curves(report: dict) -> go.Figure:
    """The validation metric per epoch of every variant: the mean over seeds, a band of ± one std."""
    _check(report, "plan")
    fig = go.Figure()
    for i, (variant, c) in enumerate(report["curves"].items()):
        colour = BASELINE if variant.startswith("floor") else CLASS_PALETTE[i % len(CLASS_PALETTE)]
        mean, std = np.array([_num(v) for v in c["mean"]]), np.array([_num(v) for v in c["std"]])
        if np.isfinite(std).any():
            x = c["epoch"] + c["epoch"][::-1]
            y = list(mean + np.nan_to_num(std)) + list((mean - np.nan_to_num(std))[::-1])
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    fill="toself",
                    line={"width": 0},
                    fillcolor=colour,
                    opacity=0.15,
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=variant,
                )
            )
        width = 2.5 if variant.startswith("floor") else 1.5
        fig.add_trace(line_trace(c["epoch"], mean, variant, colour, width=width, legendgroup=variant))
    metric = report.get("metric", "val_acc")
    return finish(fig, title=f"{metric} per epoch (mean over seeds, band ± 1 std)", x="epoch", y=metric, height=380)


def _interval_trace(rows: list[dict], x: list, name: str, colour: str) -> go.Scatter:
    mean = [_num(r["score_mean"]) for r in rows]
    up = [_num(r["score_high"]) - m for r, m in zip(rows, mean)]
    down = [m - _num(r["score_low"]) for r, m in zip(rows, mean)]
    return go.Scatter(
        x=x,
        y=mean,
        mode="lines+markers",
        name=name,
        line={"color": colour},
        error_y={"type": "data", "array": up, "arrayminus": down, "visible": True},
    )


def sweep_figure(report: dict) -> go.Figure:
    """Left: the T sweep; right: the λ sweep at the winning T. Each point the mean over seeds of the rule's
    metric with its 95 % t-interval; the floor's mean as a dashed line; the chosen value as a star."""
    from plotly.subplots import make_subplots

    _check(report, "plan")
    rows = report["table"]
    floor = next((r for r in rows if r["phase"] == "floor"), None)
    chosen_t = report["chosen"].get("temperature", {}).get("value")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("temperature sweep", f"λ sweep at T = {chosen_t}"))
    for col, (phase, key, label) in enumerate((("temperature", "temperature", "T"), ("lam", "lam", "λ")), start=1):
        part = [r for r in rows if r["phase"] == phase]
        if not part:
            continue
        fig.add_trace(_interval_trace(part, [r[key] for r in part], f"{label} sweep", STUDENT), row=1, col=col)
        won = report["chosen"].get(key)
        if won:
            fig.add_trace(
                go.Scatter(
                    x=[won["value"]],
                    y=[won["score_mean"]],
                    mode="markers",
                    name=f"chosen {label}",
                    marker={"symbol": "star", "size": 16, "color": "black"},
                ),
                row=1,
                col=col,
            )
        if floor is not None and floor["score_mean"] is not None:
            fig.add_hline(
                y=floor["score_mean"],
                line={"color": BASELINE, "dash": "dash"},
                row=1,
                col=col,
                annotation_text="student alone",
                annotation_position="bottom right",
            )
        fig.update_xaxes(title_text=label, row=1, col=col)
    fig.update_xaxes(type="log", row=1, col=1)
    rule = report["spec"]["rule"]
    metric = f"{rule['metric']}-epoch {report.get('metric', 'val_acc')}"
    fig.update_yaxes(title_text=f"{metric} (mean, 95% CI)", row=1, col=1)
    return finish(fig, title="Sweeps: the mean over seeds with its 95 % interval", height=380)


def capacity_matrix(report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(gain means, interval texts): rows the sizes largest first ("rung 1 (19,258)"), columns T."""
    _check(report, "capacity")
    df = pd.DataFrame(report["grid"])
    df["label"] = df["size"] + " (" + df["parameters"].map(lambda p: f"{int(p):,}") + ")"
    order = list(dict.fromkeys(df["label"]))
    z = df.pivot(index="label", columns="temperature", values="gain_mean").loc[order].astype(float)
    text = df.pivot(index="label", columns="temperature", values="gain").loc[order]
    return z, text


def capacity_heatmap(report: dict) -> go.Figure:
    """Student size (rows, largest first) × T (columns): colour the mean gain over the same-size
    student alone (diverging, 0 white), each cell's text its 95 % interval."""
    z, text = capacity_matrix(report)
    top = float(np.nanmax(np.abs(z.to_numpy()))) if np.isfinite(z.to_numpy()).any() else 1.0
    top = top if top > 0 else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(),
            x=[f"T={t:g}" for t in z.columns],
            y=list(z.index),
            text=text.to_numpy(),
            texttemplate="%{text}",
            colorscale=DIVERGING,
            zmid=0,
            zmin=-top,
            zmax=top,
            colorbar={"title": "gain"},
            hovertemplate="%{y}<br>%{x}<br>gain %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    metric = report.get("metric", "val_acc")
    title = f"Capacity gap: gain in best-epoch {metric} over the same-size student alone [95% CI]"
    return finish(
        fig, title=title, x="temperature", y="student size (parameters)", height=120 + 60 * len(z), legend=False
    )


def across_figure(report: dict) -> go.Figure:
    """The gain of the method over the student alone on each pair, mean ± std over seeds."""
    _check(report, "across")
    rows = report["table"]
    fig = go.Figure(
        go.Bar(
            x=[r["pair"] for r in rows],
            y=[_num(r["gain_mean"]) for r in rows],
            marker_color=STUDENT,
            error_y={"type": "data", "array": [0.0 if r["gain_std"] is None else r["gain_std"] for r in rows]},
            text=[r["gain"] for r in rows],
            name=report["spec"]["method"],
        )
    )
    fig.add_hline(y=0, line={"color": NEUTRAL})
    return finish(
        fig,
        title=f"{report['spec']['method']}: gain over the student alone (mean ± std over seeds)",
        x="pair",
        y="gain (metric units; + is better)",
        height=360,
        legend=False,
    )


def report_tables(report: dict) -> dict[str, pd.DataFrame]:
    """The report's tables by title, columns ready to show."""
    _check(report)
    kind = report["kind"]
    if kind == "plan":
        t = pd.DataFrame(report["table"])
        cols = ["phase", "variant", "temperature", "lam", "n_seeds", "best", "final", "score", "gain", "wall_s"]
        chosen = pd.DataFrame(
            [
                {"what": k, "value": c["value"], "score [95% CI]": c["score"], "gain over floor [95% CI]": c["gain"]}
                for k, c in report["chosen"].items()
            ]
        )
        return {"Runs by variant (mean ± std over seeds)": t[cols], "Chosen": chosen}
    if kind == "capacity":
        text = capacity_matrix(report)[1].rename(columns=lambda t: f"T={t:g}")
        text.columns.name = None
        return {"Gain over the same-size student alone [95% CI]": text.reset_index().rename(columns={"label": "size"})}
    if kind == "across":
        t = pd.DataFrame(report["table"])
        skipped = pd.DataFrame([{"pair": k, "why": v} for k, v in report["skipped"].items()])
        return {
            "Across pairs": t[["pair", "metric", "n_seeds", "alone", "method", "gain", "settings"]],
            "Skipped": skipped,
        }
    cols = [
        "metric",
        "identical_on_rerun",
        "identical_across_threads",
        "identical_across_devices",
        "differs_across_seeds",
        "seed_std",
        "thread_spread",
        "device_spread",
    ]
    return {
        "Reproducibility (bit-identical per metric; spreads of the final value)": pd.DataFrame(report["metrics"])[cols]
    }


def report_figures(report: dict) -> list[go.Figure]:
    """The report's figures in order."""
    kind = _check(report)["kind"]
    if kind == "plan":
        return [sweep_figure(report), plan_curves(report)]
    if kind == "capacity":
        return [capacity_heatmap(report)]
    if kind == "across":
        return [across_figure(report)] if report["table"] else []
    return []
