"""Language-model views: the formula of every token divergence (METHODS.md §6), and the split of the
teacher–student mismatch between copy (induction) positions and local (next-token rule) positions.

The tinylang data marks every position with its kind (``extras["position_kind"]``): 0 local, where the
next token follows from the current one; 1 copy, where it can only be read from the earlier run (an
induction head's job); -1 other (the ``<s>`` closing a copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch

from analyses import _style
from kdcore.divergences import KINDS, token_divergence
from kdcore.validation import InvalidParameterError

# p: teacher, q: student, both softmax(z / T) over the vocabulary at one position.
FORMULAS = {
    "fkl": r"\mathrm{fkl} = \mathrm{KL}(p\,\|\,q) = \sum_v p_v \log\frac{p_v}{q_v}\quad\text{(mode-covering)}",
    "rkl": r"\mathrm{rkl} = \mathrm{KL}(q\,\|\,p) = \sum_v q_v \log\frac{q_v}{p_v}\quad\text{(mode-seeking)}",
    "jsd": r"\mathrm{jsd}_\beta = \beta\,\mathrm{KL}(p\,\|\,m) + (1-\beta)\,\mathrm{KL}(q\,\|\,m),\quad "
    r"m = \beta p + (1-\beta) q,\ 0<\beta<1",
    "tvd": r"\mathrm{tvd} = \tfrac12 \sum_v |p_v - q_v|",
    "skew_fkl": r"\mathrm{skew\_fkl}_\alpha = \mathrm{KL}\big(p\,\|\,\alpha p + (1-\alpha) q\big)",
    "skew_rkl": r"\mathrm{skew\_rkl}_\alpha = \mathrm{KL}\big(q\,\|\,\alpha q + (1-\alpha) p\big)",
    "akl": r"\mathrm{akl}_\mu = w\,\mathrm{fkl} + (1-w)\,\mathrm{rkl},\quad w = \frac{g_{head}}{g_{head} + g_{tail}},\quad "
    r"g_{head} = \sum_{v \in \text{head}_\mu(p)} |p_v - q_v|",
    "uld": r"\mathrm{uld} = \sum_i \big|\,\mathrm{sort}_\downarrow(p)_i - \mathrm{sort}_\downarrow(q)_i\,\big|"
    r"\quad\text{(no shared vocabulary needed)}",
}
POSITION_KINDS = {1: "copy (induction)", 0: "local (next-token rule)", -1: "other (<s> after a copy)"}


def _check(name: str, value: Any, dims: int, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != dims:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be a tensor with {dims} dimensions. Got {got} instead."
        )
    return value


CHUNK_LOGITS = 2**22  # logits per chunk of sequences converted to float64 at a time (32 MB)


def _divergences(s: torch.Tensor, t: torch.Tensor, kinds: Sequence[str], temperature: float) -> dict[str, torch.Tensor]:
    """Every token divergence [N, L] in float64, a few sequences at a time (no [N, L, V] float64 copy)."""
    per = max(1, CHUNK_LOGITS // max(s[:1].numel(), 1))
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    for i in range(0, s.shape[0], per):
        sc, tc = s[i : i + per].double(), t[i : i + per].double()  # [n, L, V]
        for k in kinds:
            parts[k].append(token_divergence(sc, tc, k, temperature=temperature))
    return {k: torch.cat(v) for k, v in parts.items()}


def split_by_position_kind(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    position_kind: torch.Tensor,
    *,
    baseline_logits: torch.Tensor | None = None,
    kinds: Sequence[str] = KINDS,
    temperature: float = 1.0,
) -> pd.DataFrame:
    """Mean of every token divergence (student vs teacher) and each model's next-token accuracy, over
    the positions of each kind.

    student_logits, teacher_logits, baseline_logits: [N, L, V]; labels: [N, L] next-token ids
    (-100 = not predicted); position_kind: [N, L] (1 copy, 0 local, -1 other).
    Returns one row per position kind present: ``position``, ``positions`` (count), one column per
    divergence (nats; tvd and uld unitless), ``teacher accuracy``, ``student accuracy`` and, with a
    baseline, ``baseline accuracy``.
    """
    where = "analyses.tokens.split_by_position_kind"
    s, t = _check("student_logits", student_logits, 3, where), _check("teacher_logits", teacher_logits, 3, where)
    y, kind = _check("labels", labels, 2, where), _check("position_kind", position_kind, 2, where)
    if not (s.shape[:2] == t.shape[:2] == y.shape == kind.shape):
        raise InvalidParameterError(
            f"The logits, labels and position kinds of {where} must share [N, L]. Got "
            f"{tuple(s.shape)}, {tuple(t.shape)}, {tuple(y.shape)}, {tuple(kind.shape)}."
        )
    divs = _divergences(s, t, kinds, temperature)  # [N, L] each
    models = {"teacher": t, "student": s} | ({"baseline": baseline_logits} if baseline_logits is not None else {})
    right = {m: z.argmax(-1) == y for m, z in models.items()}  # [N, L] bool
    rows = []
    for code, name in POSITION_KINDS.items():
        keep = (kind == code) & (y != -100)
        if not bool(keep.any()):
            continue
        row = {"position": name, "positions": int(keep.sum())}
        row |= {k: float(v[keep].mean()) for k, v in divs.items()}
        row |= {f"{m} accuracy": float(r[keep].double().mean()) for m, r in right.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def figure_split(table: pd.DataFrame) -> go.Figure:
    """Left: each divergence's mean on copy and on local positions. Right: each model's next-token
    accuracy there. Two panels, two axes: divergences in nats, accuracy as a fraction."""
    kinds = [c for c in table.columns if c in KINDS]
    models = [c[: -len(" accuracy")] for c in table.columns if c.endswith(" accuracy")]
    main = table[table["position"] != POSITION_KINDS[-1]]  # copy and local only
    titles = ["divergence, student vs teacher", "next-token accuracy"]
    fig = _style.panels_in_a_row(titles, widths=[0.62, 0.38], spacing=0.1)
    shades = {POSITION_KINDS[1]: _style.class_colour(3), POSITION_KINDS[0]: _style.class_colour(0)}
    for _, row in main.iterrows():
        fig.add_trace(
            go.Bar(
                x=kinds,
                y=[row[k] for k in kinds],
                name=f"{row['position']} · {row['positions']} positions",
                marker_color=shades[row["position"]],
                legendgroup=row["position"],
                hovertemplate="%{x}: %{y:.4f}<extra>" + row["position"] + "</extra>",
            ),
            row=1,
            col=1,
        )
    for m in models:
        fig.add_trace(
            go.Bar(
                x=[p.split(" (")[0] for p in main["position"]],
                y=main[f"{m} accuracy"],
                name=m,
                marker_color=_style.role_colour(m),
                hovertemplate="%{x} positions: %{y:.1%}<extra>" + m + "</extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="mean divergence (nats; tvd, uld 0–2)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy (fraction)", range=[0, 1.05], row=1, col=2)
    fig.update_xaxes(title_text="divergence", row=1, col=1)
    fig.update_xaxes(title_text="position kind", row=1, col=2)
    return _style.finish(fig, title="Where the student departs from the teacher: copy vs local positions", height=420)


def short_token(token: str) -> str:
    """A token label that fits a tick: specials kept, whitespace shown as a visible mark."""
    return {"": "∅", " ": "␣", "\n": "↵"}.get(token, token.strip() or "␣")[:6]


def position_colour(kind: int) -> str:
    """The colour of a position kind in every token figure (copy and local as in figure_split)."""
    return {1: _style.class_colour(3), 0: _style.class_colour(0)}.get(int(kind), _style.NEUTRAL)
