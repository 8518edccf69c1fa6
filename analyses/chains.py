"""A chain of runs (TAKD, DGKD, born-again generations; kdcore/jobs/chain.py) as a table and a figure:
each model of the chain in order, its validation accuracy, and the gap from the teacher and from the
model that taught it (teacher → assistant → student). Pure functions over the chain's summary.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analyses._style import NEUTRAL, TEACHER, finish, role_colour
from kdcore.validation import InvalidParameterError

COLUMNS = [
    "stage",
    "model",
    "taught by",
    "parameters",
    "final val acc",
    "best val acc",
    "gap to teacher",
    "gap to its teacher",
]


def _stages(summary: Any) -> list[dict]:
    if not isinstance(summary, dict) or not isinstance(summary.get("stages"), list):
        raise InvalidParameterError(
            "The 'summary' argument must be a chain's summary (a dict with 'stages', as run_chain records it). "
            f"Got {type(summary).__name__}{'' if not isinstance(summary, dict) else ' without stages'}."
        )
    return summary["stages"]


def chain_table(summary: dict) -> pd.DataFrame:
    """One row per model: the teacher (stage 0), then each stage's student with its accuracy, the gap
    to the teacher's accuracy and to the accuracy of the model that taught it (positive: below it)."""
    stages = _stages(summary)
    t_acc = summary.get("teacher_val_acc")
    first = stages[0] if stages else {}
    rows = [[0, first.get("teacher", "teacher"), "", first.get("teacher_parameters"), t_acc, t_acc, 0.0, None]]
    for s in stages:
        acc, above = s.get("final_val_acc"), s.get("teacher_val_acc")
        rows.append(
            [
                s["stage"],
                s["student"],
                s["teacher"],
                s.get("student_parameters"),
                acc,
                s.get("best_val_acc"),
                None if acc is None or t_acc is None else t_acc - acc,
                None if acc is None or above is None else above - acc,
            ]
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def chain_figure(summary: dict) -> go.Figure:
    """Validation accuracy along the chain (teacher first, then each stage's student), each bar
    labelled with its gap to the model that taught it; the student alone as a dotted line when the
    chain measured it (TAKD's midpoint), BAN's ensemble as a dashed line when it was evaluated."""
    table = chain_table(summary)
    labels = [
        f"{m}<br>({p:,} params)" if isinstance(p, int) else str(m) for m, p in zip(table["model"], table["parameters"])
    ]
    gaps = ["" if g is None or g != g else f"{-100 * g:+.1f} pts" for g in table["gap to its teacher"]]
    colours = [TEACHER] + [role_colour("student") if i == len(table) - 1 else NEUTRAL for i in range(1, len(table))]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=table["final val acc"],
            marker_color=colours,
            text=gaps,
            textposition="outside",
            name="final val acc",
            hovertemplate="%{x}<br>val acc %{y:.2%}<br>vs its teacher %{text}<extra></extra>",
        )
    )
    alone = (summary.get("measured") or {}).get("student alone")
    if alone is not None:
        fig.add_hline(y=alone, line_dash="dot", line_color=role_colour("alone"), annotation_text="student alone")
    if summary.get("ensemble_val_acc") is not None:
        fig.add_hline(y=summary["ensemble_val_acc"], line_dash="dash", line_color=NEUTRAL, annotation_text="ensemble")
    name = str(summary.get("chain") or "chain").upper()
    fig.update_yaxes(tickformat=".0%")
    return finish(
        fig,
        title=f"{name}: accuracy along the chain",
        x="model (in training order)",
        y="validation accuracy",
        legend=False,
    )
