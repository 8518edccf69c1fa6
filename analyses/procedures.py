"""The mechanism of the procedure methods (methods/14 §14.3, §14.5, §14.6), as pure plotly figures
over what the run recorded (its epoch metrics, its summary, ZSKT's generated samples):

- `stone_accuracy_figure`: block-wise KD — every stepping-stone's validation accuracy per epoch
  (stone i = student blocks 1..i, connector, teacher blocks i+1..n), the student's and the teacher's;
- `pwkd_figure`: PWKD — the stages (sub-teacher width, epochs) as bands, each sub-teacher's
  accuracy, and the student's accuracy through the stages;
- `zskt_samples_figure`: ZSKT — the generator's samples from a fixed z at every epoch (one row an
  epoch), `zskt_accuracy_figure`: the student's accuracy on real data against the teacher's.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses._style import NEUTRAL, STUDENT, TEACHER, finish, line_trace
from kdcore.validation import InvalidParameterError

_STONE = re.compile(r"^val_acc_stone(\d+)$")


def _epochs(epochs: Any) -> pd.DataFrame:
    if not isinstance(epochs, pd.DataFrame) or "epoch" not in epochs.columns:
        raise InvalidParameterError(
            "The 'epochs' argument must be a run's epoch metrics (RunStore.metrics(run_id, 'epoch'), a DataFrame "
            f"with an 'epoch' column). Got {type(epochs).__name__}."
        )
    return epochs.sort_values("epoch")


def stone_columns(epochs: pd.DataFrame) -> list[str]:
    """The stones' accuracy columns val_acc_stone1 … in stone order."""
    found = [c for c in epochs.columns if _STONE.match(str(c))]
    return sorted(found, key=lambda c: int(_STONE.match(c).group(1)))  # type: ignore[union-attr]


def stone_table(epochs: pd.DataFrame, summary: dict | None = None) -> pd.DataFrame:
    """One row per stone at the last epoch: stone, its student blocks / teacher blocks, weight, accuracy."""
    ep = _epochs(epochs)
    cols = stone_columns(ep) + ["val_acc"]
    last = ep[ep["epoch"] > 0].iloc[-1] if (ep["epoch"] > 0).any() else ep.iloc[-1]
    info = (summary or {}).get("blockwise") or {}
    s_st, t_st = info.get("student_stages") or [], info.get("teacher_stages") or []
    n = len(cols)
    rows = []
    for i, c in enumerate(cols, start=1):
        s_part = f"student up to {s_st[i - 1]}" if len(s_st) >= i else f"student blocks 1..{i}"
        t_part = "student head" if i == n else (f"teacher after {t_st[i - 1]}" if len(t_st) >= i else "teacher tail")
        rows.append(
            [str(i) if i < n else f"{i} (student)", s_part, t_part, 2.0 ** -(n - i), float(last.get(c, np.nan))]
        )
    return pd.DataFrame(rows, columns=["stone", "front", "back", "weight", "val acc"])


def stone_accuracy_figure(epochs: pd.DataFrame, teacher_acc: float | None = None) -> go.Figure:
    """Validation accuracy per epoch of every stepping-stone (lighter: fewer student blocks), the student's
    (the last stone) and the teacher's (dashed)."""
    ep = _epochs(epochs)
    ep = ep[ep["epoch"] > 0] if (ep["epoch"] > 0).any() else ep
    cols = stone_columns(ep)
    if "val_acc" not in ep.columns:
        raise InvalidParameterError("The epoch metrics have no 'val_acc': pass a classification run's epochs.")
    fig = go.Figure()
    for i, c in enumerate(cols, start=1):
        hover = f"stone {i}<br>epoch %{{x}}<br>val acc %{{y:.2%}}<extra></extra>"
        dash = "dot" if i % 2 else "dashdot"
        opacity = 0.5 + 0.5 * i / (len(cols) + 1)
        fig.add_trace(
            line_trace(
                ep["epoch"],
                ep[c],
                f"stone {i}",
                NEUTRAL,
                mode="lines+markers",
                dash=dash,
                opacity=opacity,
                hovertemplate=hover,
            )
        )
    hover = "student<br>epoch %{x}<br>val acc %{y:.2%}<extra></extra>"
    name = f"student (stone {len(cols) + 1})"
    fig.add_trace(line_trace(ep["epoch"], ep["val_acc"], name, STUDENT, mode="lines+markers", hovertemplate=hover))
    if teacher_acc is not None:
        fig.add_hline(y=teacher_acc, line_dash="dash", line_color=TEACHER, annotation_text="teacher")
    fig.update_yaxes(tickformat=".0%")
    return finish(fig, title="Block-wise KD: every stepping-stone's accuracy", x="epoch", y="validation accuracy")


def pwkd_figure(epochs: pd.DataFrame, summary: dict) -> go.Figure:
    """The student's validation accuracy per epoch over PWKD's stages (a band per stage, labelled with its
    sub-teacher's width), and each sub-teacher's accuracy as a step line over its stage."""
    ep = _epochs(epochs)
    stages = (summary or {}).get("pwkd", {}).get("stages") if isinstance(summary, dict) else None
    if not stages:
        raise InvalidParameterError("The 'summary' must be a pwkd run's summary (with 'pwkd': {'stages': [...]}).")
    fig = go.Figure()
    for k, s in enumerate(stages):
        fig.add_vrect(
            x0=s["start_epoch"] - 0.5, x1=s["end_epoch"] + 0.5, fillcolor=TEACHER, opacity=0.04 + 0.06 * (k % 2),
            line_width=0, annotation_text=f"T×{s['width']:g}", annotation_position="top left",
        )  # fmt: skip
    xs = [x for s in stages for x in (s["start_epoch"] - 0.5, s["end_epoch"] + 0.5)]
    ys = [s["teacher_val_acc"] for s in stages for _ in (0, 1)]
    hover = "sub-teacher<br>val acc %{y:.2%}<extra></extra>"
    fig.add_trace(line_trace(xs, ys, "sub-teacher", TEACHER, hovertemplate=hover))
    done = ep[ep["epoch"] > 0]
    hover = "epoch %{x}<br>val acc %{y:.2%}<extra></extra>"
    fig.add_trace(
        line_trace(done["epoch"], done["val_acc"], "student", STUDENT, mode="lines+markers", hovertemplate=hover)
    )
    fig.update_yaxes(tickformat=".0%")
    return finish(fig, title="PWKD: sub-teachers of growing width, stage by stage", x="epoch", y="validation accuracy")


def samples_grid(samples: dict[str, Any]) -> tuple[list[int], np.ndarray]:
    """(epochs, grid [E·H', K·W', C]) of {"epoch_<e>": [K, C, H, W]}: one row of K samples per epoch, each
    sample min–max scaled to [0, 1] on its own, 1-pixel gaps."""
    keys = sorted((int(k.split("_")[1]), k) for k in samples if re.match(r"^epoch_\d+$", k))
    if not keys:
        raise InvalidParameterError("The 'samples' must map 'epoch_<e>' to [K, C, H, W] arrays (zskt's samples file).")
    rows = []
    for _, k in keys:
        a = np.asarray(samples[k], dtype=np.float64)  # [K, C, H, W]
        lo, hi = a.min(axis=(1, 2, 3), keepdims=True), a.max(axis=(1, 2, 3), keepdims=True)
        a = (a - lo) / np.where(hi > lo, hi - lo, 1.0)
        a = np.pad(a, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=1.0)
        rows.append(np.concatenate(list(a.transpose(0, 2, 3, 1)), axis=1))  # [H+1, K·(W+1), C]
    return [e for e, _ in keys], np.concatenate(rows, axis=0)


def zskt_samples_figure(samples: dict[str, Any]) -> go.Figure:
    """The generator's samples over time: one row per epoch (epoch 0: before training), the same z in
    every row (so a column follows one sample)."""
    epochs, grid = samples_grid(samples)
    h = grid.shape[0] // len(epochs)
    if grid.shape[2] == 1:
        fig = go.Figure(go.Heatmap(z=grid[::-1, :, 0], colorscale="gray", showscale=False, hoverinfo="skip"))
    else:
        fig = go.Figure(go.Image(z=(grid[..., :3] * 255).astype(np.uint8), hoverinfo="skip"))
    ticks = [(len(epochs) - 1 - i) * h + h / 2 if grid.shape[2] == 1 else i * h + h / 2 for i in range(len(epochs))]
    fig.update_yaxes(tickvals=ticks, ticktext=[f"epoch {e}" for e in epochs], scaleanchor="x")
    fig.update_xaxes(showticklabels=False)
    return finish(fig, title="ZSKT: generated samples over training (same z per column)", x="sample", legend=False)


def zskt_accuracy_figure(epochs: pd.DataFrame, teacher_acc: float | None, test_acc: float | None = None) -> go.Figure:
    """The student's accuracy on real validation data per epoch (it never saw a real training sample)."""
    ep = _epochs(epochs)
    fig = go.Figure(go.Scatter(x=ep["epoch"], y=ep["val_acc"], mode="lines+markers", name="student (real val data)",
                               line={"color": STUDENT}))  # fmt: skip
    if teacher_acc is not None:
        fig.add_hline(y=teacher_acc, line_dash="dash", line_color=TEACHER, annotation_text="teacher")
    if test_acc is not None:
        fig.add_hline(y=test_acc, line_dash="dot", line_color=STUDENT, annotation_text="student, test split (end)")
    fig.update_yaxes(tickformat=".0%")
    return finish(fig, title="ZSKT: the student on real data, trained on generated inputs only", x="epoch",
                  y="accuracy")  # fmt: skip
