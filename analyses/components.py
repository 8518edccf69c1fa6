"""Divergence components: where the KL between teacher and student comes from.

What the view shows
-------------------
**Classifiers.** The KL(teacher ‖ student) of each sample split into parts that add back to it:

- CAKD (Zhang, Chen, Ning, Yang, Yuan 2024, arXiv 2410.14741, eq. 3): with a per-sample strong set
  S of classes and the weak set W = not S, KL = BCD + p_S·SCD + p_W·WCD, where BCD compares the
  binary masses (p_S, p_W), SCD the distributions inside S and WCD those inside W. The strong set
  follows a rule: ``target`` (S = {label}), ``topk`` (the teacher's k highest classes), ``mass``
  (the fewest top teacher classes holding τ of its probability), ``labels`` (multi-label: the
  positive labels).
- DKD (Zhao et al. CVPR 2022, arXiv 2203.08679): KL = TCKD + (1 − p_t)·NCKD, the target-class part
  and the non-target ("dark knowledge") part.

Per sample and averaged per class, with each part's **share of the KL**: BCD/KL, p_S·SCD/KL and
p_W·WCD/KL (they sum to 1). Per class the shares are ratios of sums (Σ part / Σ KL over the
class's samples), so they too sum to 1; a sample whose KL is 0 has undefined (NaN) shares.
The class of a sample is its label, or the teacher's top class where there are no single labels.

**Language models.** Every token-level divergence (METHODS §6: fkl, rkl, jsd, tvd, skew_fkl,
skew_rkl, akl, uld) at each position of one text, as a heatmap over its tokens, with the teacher's
and the student's entropy per token (nats).

What to look for
----------------
A share dominated by BCD / TCKD: the student has the target's (or the strong set's) confidence
wrong. A large p_W·WCD / NCKD share: the student matches the top classes but not how the teacher
ranks the rest, the dark knowledge DKD upweights with β. On text, spikes in the divergences where
the teacher's entropy is low are tokens the teacher is sure of and the student is not; forward
and reverse KL disagree most where one model spreads its mass and the other does not.

The formulas are kdcore's (``kdcore.losses.cakd_components``, ``dkd_components``, ``strong_set``,
``kdcore.divergences.token_divergence``); this module only arranges and aggregates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from analyses import _style
from kdcore.divergences import KINDS, token_divergence
from kdcore.losses import cakd_components, dkd_components, strong_set
from kdcore.validation import as_tensor

CAKD_PARTS = ("bcd", "scd", "wcd")
_PART_LABELS = {"bcd": "BCD", "scd": "p_S·SCD", "wcd": "p_W·WCD", "tckd": "TCKD", "nckd": "(1 − p_t)·NCKD"}
# parts of a divergence are no model: colours apart from the teacher / baseline / student palette
_PART_COLOURS = {"bcd": "#6a51a3", "scd": "#17becf", "wcd": "#e7ba52", "tckd": "#6a51a3", "nckd": "#e7ba52"}


def _shares(df: pd.DataFrame, parts: dict[str, str], total: str = "kl") -> pd.DataFrame:
    """Add share_<part> = weighted part / total (NaN where the total is 0)."""
    denom = df[total].where(df[total] > 0)
    for name, col in parts.items():
        df[f"share_{name}"] = df[col] / denom
    return df


# --------------------------------------------------------------------------------------------
# Classification components
# --------------------------------------------------------------------------------------------
@dataclass
class ComponentsResult:
    """Per-sample and per-class CAKD and DKD components of KL(teacher ‖ student)."""

    per_sample: pd.DataFrame  # one row per (rule, sample): kl, bcd, scd, wcd, p_strong, p_weak, n_strong,
    # scd_weighted (= p_S·SCD), wcd_weighted (= p_W·WCD), share_* (of the KL)
    per_class: pd.DataFrame  # one row per (rule, class): n, means of the above, share_* = Σ part / Σ KL
    dkd: (
        pd.DataFrame | None
    )  # one row per sample: kl, tckd, nckd, p_target, nckd_weighted, share_*; None without labels
    dkd_per_class: pd.DataFrame | None  # one row per class, as per_class
    temperature: float = 1.0  # T of both distributions (no T² factor)
    class_names: list[str] | None = None  # names of the classes, for figures
    rules: tuple[str, ...] = field(default=())  # the strong-set rules computed


def _class_of(labels: Tensor | None, teacher: Tensor) -> np.ndarray:
    if labels is not None and labels.dim() == 1:
        return labels.long().cpu().numpy()
    return teacher.argmax(-1).cpu().numpy()


def _aggregate(per_sample: pd.DataFrame, keys: list[str], parts: dict[str, str], extra: list[str]) -> pd.DataFrame:
    """Means per group of every column, and shares as ratios of sums."""
    cols = ["kl"] + extra + list(parts.values())
    g = per_sample.groupby(keys, sort=True)
    out = g[cols].mean()
    out.insert(0, "n", g.size())
    sums = g[["kl"] + list(parts.values())].sum()
    for name, col in parts.items():
        out[f"share_{name}"] = sums[col] / sums["kl"].where(sums["kl"] > 0)
    return out.reset_index()


def compute(
    student_logits: Any,
    teacher_logits: Any,
    labels: Any = None,
    *,
    rules: Sequence[str] | None = None,
    k: int = 2,
    tau: float = 0.9,
    temperature: float = 1.0,
    strong: Any = None,
    class_names: Sequence[str] | None = None,
) -> ComponentsResult:
    """CAKD's BCD/SCD/WCD for every strong-set rule, and DKD's TCKD/NCKD, per sample and per class.

    ``student_logits``, ``teacher_logits``: [B, C]. ``labels``: [B] class indices (single-label) or
    [B, C] multi-hot (multi-label), or None. ``rules``: strong-set rules of
    ``kdcore.losses.strong_set`` (default: ``target``, ``topk``, ``mass`` with class labels;
    ``labels``, ``topk``, ``mass`` with multi-hot labels; ``topk``, ``mass`` without labels);
    ``k`` for ``topk``, ``tau`` for ``mass``. ``strong``: an extra [B, C] strong-set mask of your
    own, reported as rule ``custom``. ``temperature``: T of both distributions (and of the split).
    DKD is computed only with class labels.
    """
    where = "analyses.components.compute"
    s = as_tensor("student_logits", student_logits, where=where)
    t = as_tensor("teacher_logits", teacher_logits, where=where)
    y = as_tensor("labels", labels, where=where) if labels is not None else None
    if y is not None and y.dim() not in (1, 2):
        raise ValueError(
            f"The 'labels' argument of {where} must be class indices [B] or multi-hot labels [B, C]. "
            f"Got shape {tuple(y.shape)} instead."
        )
    single = y is not None and y.dim() == 1
    if rules is None:
        rules = (
            ("target", "topk", "mass")
            if single
            else (("labels", "topk", "mass") if y is not None else ("topk", "mass"))
        )
    rules = tuple(rules)
    masks: dict[str, Tensor] = {}
    for rule in rules:
        masks[rule] = strong_set(t, rule=rule, labels=y, k=k, tau=tau, temperature=temperature)  # [B, C] bool
    if strong is not None:
        masks["custom"] = as_tensor("strong", strong, where=where)
    if not masks:
        raise ValueError(
            f"The 'rules' argument of {where} selects no strong-set rule and no 'strong' mask was given. "
            f"Pass rules from {('target', 'topk', 'mass', 'labels')}."
        )
    cls = _class_of(y, t)
    frames = []
    for rule, mask in masks.items():
        parts = {
            key: v.detach().cpu().double().numpy()
            for key, v in cakd_components(s, t, mask, temperature=temperature).items()
        }  # each [B]
        df = pd.DataFrame(
            {
                "rule": rule,
                "sample": np.arange(len(cls)),
                "class": cls,
                **parts,
                "n_strong": mask.bool().sum(-1).cpu().numpy(),
            }
        )
        df["scd_weighted"] = df["p_strong"] * df["scd"]
        df["wcd_weighted"] = df["p_weak"] * df["wcd"]
        frames.append(_shares(df, {"bcd": "bcd", "scd": "scd_weighted", "wcd": "wcd_weighted"}))
    per_sample = pd.concat(frames, ignore_index=True)
    cakd_parts = {"bcd": "bcd", "scd": "scd_weighted", "wcd": "wcd_weighted"}
    per_class = _aggregate(per_sample, ["rule", "class"], cakd_parts, ["scd", "wcd", "p_strong", "n_strong"])
    dkd = dkd_class = None
    if single and y is not None:
        parts = {
            key: v.detach().cpu().double().numpy()
            for key, v in dkd_components(s, t, y, temperature=temperature).items()
        }
        dkd = pd.DataFrame({"sample": np.arange(len(cls)), "class": cls, **parts})
        dkd["nckd_weighted"] = (1.0 - dkd["p_target"]) * dkd["nckd"]
        dkd = _shares(dkd, {"tckd": "tckd", "nckd": "nckd_weighted"})
        dkd_class = _aggregate(dkd, ["class"], {"tckd": "tckd", "nckd": "nckd_weighted"}, ["nckd", "p_target"])
    return ComponentsResult(
        per_sample=per_sample,
        per_class=per_class,
        dkd=dkd,
        dkd_per_class=dkd_class,
        temperature=float(temperature),
        class_names=list(class_names) if class_names else None,
        rules=tuple(masks),
    )


def compute_from_adapters(
    student: Any, teacher: Any, inputs: Tensor, labels: Any = None, **kwargs: Any
) -> ComponentsResult:
    """:func:`compute` on ``student.logits(inputs)`` and ``teacher.logits(inputs)`` (ModelAdapters)."""
    return compute(student.logits(inputs), teacher.logits(inputs), labels, **kwargs)


# --------------------------------------------------------------------------------------------
# Token-level divergences over a text
# --------------------------------------------------------------------------------------------
@dataclass
class TokenResult:
    """Every token-level divergence at each position of one text, with both models' entropies."""

    per_position: pd.DataFrame  # position, token, kept, one column per kind, teacher_entropy, student_entropy (nats)
    kinds: tuple[str, ...]  # divergences computed
    means: dict[str, float]  # mean of each kind over the kept positions (= divergence_loss)
    temperature: float = 1.0  # T of both distributions


def _entropy(logits: Tensor, temperature: float) -> Tensor:
    """H(softmax(z/T)) in nats per position, [..., V] -> [...]; masked (-inf) entries add 0."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    return -torch.where(torch.isneginf(logp), torch.zeros_like(logp), logp.exp() * logp).sum(-1)


def token_components(
    student_logits: Any,
    teacher_logits: Any,
    *,
    kinds: Sequence[str] | None = None,
    tokens: Sequence[str] | None = None,
    mask: Any = None,
    labels: Any = None,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
    mu: float = 0.5,
    align: str | None = None,
) -> TokenResult:
    """Per-position token-level divergences of one text ([L, V] or [1, L, V] logits of each model).

    ``kinds``: from ``kdcore.divergences.KINDS`` (default: all of them, or only ``uld`` when the
    vocabularies differ and ``align`` is None). ``tokens``: a label per position for the figure.
    ``mask`` [L] / ``labels`` [L] (-100 = not predicted): positions that count in the means; every
    position is still shown. Other parameters as in ``token_divergence``.
    """
    where = "analyses.components.token_components"
    s = as_tensor("student_logits", student_logits, where=where)
    t = as_tensor("teacher_logits", teacher_logits, where=where)
    if s.dim() == 3 and s.shape[0] == 1:
        s = s[0]
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if s.dim() != 2 or t.dim() != 2 or s.shape[0] != t.shape[0] or s.numel() == 0:
        raise ValueError(
            f"student_logits and teacher_logits of {where} must be the logits of one text, [L, V] or "
            f"[1, L, V], with the same length. Got {tuple(as_tensor('s', student_logits, where=where).shape)} "
            f"and {tuple(as_tensor('t', teacher_logits, where=where).shape)}."
        )
    length = s.shape[0]
    if kinds is None:
        kinds = KINDS if (s.shape[-1] == t.shape[-1] or align is not None) else ("uld",)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"The 'kinds' argument of {where} must hold names from {KINDS}. Got {list(kinds)} instead.")
    if tokens is not None and len(tokens) != length:
        raise ValueError(
            f"The 'tokens' argument of {where} must have one label per position ({length}). Got {len(tokens)} instead."
        )
    keep = torch.ones(length, dtype=torch.bool)
    for name, value in (("mask", mask), ("labels", labels)):
        if value is None:
            continue
        v = as_tensor(name, value, where=where)
        if v.numel() != length:
            raise ValueError(
                f"The '{name}' argument of {where} must have one entry per position ({length}). "
                f"Got shape {tuple(v.shape)} instead."
            )
        v = v.reshape(-1).cpu()
        keep &= v.bool() if name == "mask" else v != -100  # labels: -100 = nothing predicted
    params: dict[str, Any] = {"temperature": temperature, "beta": beta, "alpha": alpha, "mu": mu, "align": align}
    df = pd.DataFrame(
        {
            "position": np.arange(length),
            "token": list(tokens) if tokens is not None else [str(i) for i in range(length)],
            "kept": keep.numpy(),
        }
    )
    means = {}
    for kind in kinds:
        values = token_divergence(s, t, kind, **params).detach().cpu().double()  # [L]
        df[kind] = values.numpy()
        means[kind] = float(values[keep].mean()) if bool(keep.any()) else float("nan")
    df["teacher_entropy"] = _entropy(t, float(temperature)).cpu().numpy()
    df["student_entropy"] = _entropy(s, float(temperature)).cpu().numpy()
    return TokenResult(per_position=df, kinds=kinds, means=means, temperature=float(temperature))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _class_labels(result: ComponentsResult, classes: Sequence[int]) -> list[str]:
    names = result.class_names
    return [names[c] if names and 0 <= c < len(names) else f"class {c}" for c in classes]


def _stacked(
    fig: go.Figure, df: pd.DataFrame, x: list, parts: dict[str, str], *, value: str, col: int, showlegend: bool
) -> None:
    for name, colname in parts.items():
        y = df[f"share_{name}"] if value == "share" else df[colname]
        unit = "of the KL" if value == "share" else "nats"
        fig.add_trace(
            go.Bar(
                x=x,
                y=y,
                name=_PART_LABELS[name],
                legendgroup=name,
                showlegend=showlegend,
                marker_color=_PART_COLOURS[name],
                customdata=np.stack([df["n"], df["kl"]], axis=1),
                hovertemplate=f"%{{x}}: {_PART_LABELS[name]} %{{y:.4f}} {unit}<br>mean KL %{{customdata[1]:.4f}} "
                f"nats over %{{customdata[0]}} samples<extra></extra>",
            ),
            row=1,
            col=col,
        )


def class_figure(result: ComponentsResult, *, rule: str | None = None) -> go.Figure:
    """Per class: mean CAKD components (nats, stacked to the mean KL; left) and their shares of the KL (right)."""
    rule = rule or result.rules[0]
    if rule not in result.rules:
        raise ValueError(f"The 'rule' parameter of class_figure must be one of {result.rules}. Got {rule!r} instead.")
    df = result.per_class[result.per_class["rule"] == rule]
    x = _class_labels(result, df["class"].tolist())
    parts = {"bcd": "bcd", "scd": "scd_weighted", "wcd": "wcd_weighted"}
    return _per_class_figure(
        df, x, parts, f"CAKD components per class (strong set: {rule}, T = {result.temperature:g})"
    )


def dkd_figure(result: ComponentsResult) -> go.Figure:
    """Per class: mean TCKD and (1 − p_t)·NCKD (nats, stacked to the mean KL; left) and their shares (right)."""
    if result.dkd_per_class is None:
        raise ValueError(
            "dkd_figure needs DKD components, which need class labels: pass integer labels [B] "
            "to analyses.components.compute."
        )
    df = result.dkd_per_class
    x = _class_labels(result, df["class"].tolist())
    parts = {"tckd": "tckd", "nckd": "nckd_weighted"}
    return _per_class_figure(df, x, parts, f"DKD components per class (T = {result.temperature:g})")


def _per_class_figure(df, x: list, parts: dict[str, str], title: str) -> go.Figure:
    """Two panels over the classes x: the parts' mean per sample stacked to the mean KL (nats; left)
    and their shares of the KL (right). parts: legend name -> column of df."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["mean per sample (nats)", "share of the KL"], horizontal_spacing=0.1
    )
    _stacked(fig, df, x, parts, value="mean", col=1, showlegend=True)
    _stacked(fig, df, x, parts, value="share", col=2, showlegend=False)
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    fig.update_xaxes(title_text="class")
    fig.update_yaxes(title_text="KL component (nats)", col=1)
    fig.update_yaxes(title_text="share of KL(teacher ‖ student) (0–1)", range=[0, 1], col=2)
    return _style.finish(fig, title=title)


def sample_figure(result: ComponentsResult, *, rule: str | None = None, top: int = 64) -> go.Figure:
    """The ``top`` samples of largest KL: BCD, p_S·SCD and p_W·WCD stacked to each sample's KL (nats)."""
    rule = rule or result.rules[0]
    if rule not in result.rules:
        raise ValueError(f"The 'rule' parameter of sample_figure must be one of {result.rules}. Got {rule!r} instead.")
    df = (
        result.per_sample[result.per_sample["rule"] == rule].sort_values("kl", ascending=False, kind="stable").head(top)
    )
    x = [f"#{i}" for i in df["sample"]]
    names = _class_labels(result, df["class"].tolist())
    fig = go.Figure()
    for name, col in (("bcd", "bcd"), ("scd", "scd_weighted"), ("wcd", "wcd_weighted")):
        fig.add_trace(
            go.Bar(
                x=x,
                y=df[col],
                name=_PART_LABELS[name],
                marker_color=_PART_COLOURS[name],
                customdata=np.stack([names, df["kl"], df["n_strong"]], axis=1),
                hovertemplate=f"sample %{{x}} (%{{customdata[0]}})<br>{_PART_LABELS[name]} %{{y:.4f}} nats"
                f"<br>KL %{{customdata[1]:.4f}} nats, |S| = %{{customdata[2]}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    return _style.finish(
        fig,
        title=f"KL per sample split into CAKD components (strong set: {rule}; largest KL first)",
        x="sample",
        y="KL component (nats)",
    )


def rules_figure(result: ComponentsResult) -> go.Figure:
    """Share of the KL (all samples) in BCD, p_S·SCD and p_W·WCD for each strong-set rule."""
    ps = result.per_sample
    sums = (
        ps.groupby("rule", sort=False)[["kl", "bcd", "scd_weighted", "wcd_weighted"]].sum().reindex(list(result.rules))
    )
    fig = go.Figure()
    for name, col in (("bcd", "bcd"), ("scd", "scd_weighted"), ("wcd", "wcd_weighted")):
        share = sums[col] / sums["kl"].where(sums["kl"] > 0)
        fig.add_trace(
            go.Bar(
                x=list(sums.index),
                y=share,
                name=_PART_LABELS[name],
                marker_color=_PART_COLOURS[name],
                hovertemplate=f"rule %{{x}}<br>{_PART_LABELS[name]}: %{{y:.3f}} of the KL<extra></extra>",
            )
        )
    fig.update_layout(barmode="stack", legend_traceorder="normal")
    fig.update_yaxes(range=[0, 1])
    return _style.finish(
        fig,
        title="Share of the KL in each CAKD component, per strong-set rule",
        x="strong-set rule",
        y="share of KL(teacher ‖ student) (0–1)",
    )


_KIND_UNITS = {"tvd": "(0–1)", "uld": "(L1, 0–2)"}


def _token_ticks(tokens: list[str], position_kind: Any) -> list[str]:
    """Tick labels: each token shortened to fit, escaped (a tokenizer's "<s>" is text, not plotly's
    strike-through tag), coloured by its position kind when known."""
    from html import escape

    from analyses.tokens import position_colour, short_token

    labels = [escape(short_token(str(t)), quote=False) for t in tokens]
    if position_kind is None:
        return labels
    kinds = np.asarray(position_kind.cpu() if hasattr(position_kind, "cpu") else position_kind).reshape(-1)
    return [f"<span style='color:{position_colour(k)}'>{lab}</span>" for lab, k in zip(labels, kinds)]


def token_figure(result: TokenResult, *, position_kind: Any = None) -> go.Figure:
    """Heatmap of every divergence over the text's tokens (colour = value / the kind's maximum over the
    text; hover gives the value) above the teacher's and student's entropy per token (nats).

    position_kind: [L] (1 copy, 0 local, -1 other), optional: colours the token labels by kind."""
    df = result.per_position
    kinds = list(result.kinds)
    raw = df[kinds].to_numpy().T  # [kinds, L]
    shown = np.where(df["kept"].to_numpy()[None, :], raw, np.nan)  # positions that do not count: blank
    peak = np.nanmax(np.abs(shown), axis=1, keepdims=True) if np.isfinite(shown).any() else np.ones((len(kinds), 1))
    peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
    units = [_KIND_UNITS.get(k, "nats") for k in kinds]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.06)
    x = df["position"].tolist()
    fig.add_trace(
        go.Heatmap(
            z=shown / peak,
            x=x,
            y=kinds,
            colorscale=_style.SEQUENTIAL,
            zmin=0.0,
            zmax=1.0,
            name="divergences",
            customdata=np.dstack(
                [
                    raw,
                    np.broadcast_to(np.array(df["token"], dtype=object), raw.shape),
                    np.broadcast_to(np.array(units, dtype=object)[:, None], raw.shape),
                ]
            ),
            colorbar={"title": {"text": "value / max<br>over the text"}, "y": 0.7, "len": 0.6},
            hovertemplate="position %{x} (%{customdata[1]})<br>%{y} = %{customdata[0]:.4f} "
            "%{customdata[2]}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    for role in ("teacher", "student"):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=df[f"{role}_entropy"],
                mode="lines+markers",
                name=f"{role} entropy",
                line={"color": _style.ROLE_COLOURS[role]},
                customdata=df["token"],
                hovertemplate="position %{x} (%{customdata})<br>entropy %{y:.3f} nats<extra>" + role + "</extra>",
            ),
            row=2,
            col=1,
        )
    ticks = {
        "tickmode": "array",
        "tickvals": x,
        "ticktext": _token_ticks(df["token"].tolist(), position_kind),
        "tickangle": -90,
        "tickfont": {"size": 10},
    }  # 64 tokens side by side
    fig.update_xaxes(**ticks, showticklabels=False, ticks="", row=1, col=1)
    where = " (copied tokens red, local blue)" if position_kind is not None else ""
    fig.update_xaxes(**ticks, title_text=f"token, in text order{where}", row=2, col=1)
    fig.update_yaxes(title_text="divergence", row=1, col=1)
    fig.update_yaxes(title_text="entropy (nats)", row=2, col=1)
    _style.finish(
        fig, title=f"Token-level divergences and entropy over the text (T = {result.temperature:g})", height=560
    )
    # the legend beside the entropy panel, below the heatmap's colour bar
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 0, "yanchor": "bottom"})
    return fig


def figure(result: ComponentsResult | TokenResult, **kwargs: Any) -> go.Figure:
    """The main figure of a result: :func:`class_figure` for classifier components, :func:`token_figure`
    for a text (keyword arguments pass through)."""
    return _style.figure_by_type(
        result,
        {TokenResult: token_figure, ComponentsResult: class_figure},
        where="analyses.components.figure",
        expected="a ComponentsResult or a TokenResult",
        **kwargs,
    )
