"""CKA: how similar two layers' representations are (METHODS §8).

What the view shows
-------------------
Centered kernel alignment (Kornblith, Norouzi, Lee & Hinton, ICML 2019, arXiv 1905.00414) compares
the activations X (n×d₁) and Y (n×d₂) of two layers on the same n inputs. It is 1 for
representations that differ only by a rotation and a global scale, and near 0 for unrelated ones;
it does not care about layer widths, so a 768-wide teacher layer can be compared with a 384-wide
student layer. The heatmap puts the layers of one model on the rows and the other's on the columns.
- **Teacher vs student**: a bright, roughly diagonal band means the student builds its features in
  the same order as the teacher. A student layer dim against every teacher layer learned something
  the teacher does not have (or nothing useful); a teacher block that no student layer matches is
  knowledge the student has not taken.
- **A model against itself**: bright blocks are groups of layers that compute nearly the same thing
  (candidates to drop when designing a student).
Variants: linear (default); debiased linear (Song et al. 2012, unbiased HSIC, JMLR 13; less biased
upwards with few inputs, can be slightly negative); RBF (σ² = s²·median squared distance, the median
taken over the full n×n distance matrix, diagonal included, as in Kornblith et al.'s code).
Minibatch CKA (Nguyen, Raghu & Kornblith, ICLR 2021, arXiv 2010.15327) averages the unbiased HSIC₁
over minibatches, so a heatmap over many inputs streams through bounded memory (``MinibatchCKA``).
It estimates the same quantity as the full debiased CKA, but equals it exactly only for one batch.

Features are flattened per input ([n, C, H, W] -> [n, C·H·W]); ``prepare_features`` mean-pools token
features or treats every token as an input. A layer whose features are constant over the inputs has
no similarity to speak of: its CKA is 0 (never NaN) and its name is listed in the result's
``attrs["constant_layers"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from kdcore import cka as core
from kdcore import cka_tokens as tok
from kdcore.validation import check_array, check_positive

from . import _style

__all__ = [
    "linear_cka",
    "rbf_cka",
    "cka_matrix",
    "MinibatchCKA",
    "minibatch_cka_matrix",
    "prepare_features",
    "pair_cka",
    "dominance_table",
    "dominance_warning",
    "figure_heatmap",
    "figure_heatmaps",
]

KINDS = ("linear", "rbf")


# --------------------------------------------------------------------------- inputs
def prepare_features(
    features: Mapping[str, Any],
    *,
    tokens: str = "flatten",
    mask: Any = None,
    drop_first: bool = False,
    special: Any = None,
) -> dict[str, Tensor]:
    """Turn captured activations into [n, d] matrices for CKA.

    ``tokens``: "flatten" (every tensor flattened per input: conv [n, C, H, W] -> [n, C·H·W]);
    "mean" (token features [n, L, d] mean-pooled over the kept tokens -> [n, d]);
    "per_token" (every kept token is one input -> [n·L_kept, d]). ``mask`` [n, L] (bool or 0/1)
    marks the real tokens (padding out); ``drop_first`` drops position 0 of every text (BOS, the
    attention sink, [CLS]); ``special`` [n, L] (bool) marks special tokens to drop. Both models see
    the same inputs, so the same masks apply. See ``kdcore.cka_tokens`` for why these matter.
    """
    where = "prepare_features"
    if tokens not in ("flatten", "mean", "per_token"):
        raise ValueError(
            f"The 'tokens' parameter of {where} must be one of 'flatten', 'mean', 'per_token'. Got {tokens!r} instead."
        )
    out = {}
    for name, value in features.items():
        x = check_array(f"features[{name!r}]", value, where=where, min_dim=1)
        if tokens == "flatten":
            out[name] = x.reshape(x.shape[0], -1)
            continue
        if x.dim() != 3:
            raise ValueError(
                f"tokens={tokens!r} in {where} needs token features [n, L, d]; layer {name!r} has shape {tuple(x.shape)}. "
                f"Use tokens='flatten' for conv or pooled features."
            )
        shape = (x.shape[0], x.shape[1])
        keep = tok.keep_mask(shape, attention_mask=mask, special_mask=special, drop_first=drop_first, where=where)
        out[name] = tok.pool_tokens(x, keep, tokens, name=f"features[{name!r}]", where=where)
    return out


# --------------------------------------------------------------------------- public scalars (kdcore.cka computes)
def linear_cka(X: Any, Y: Any, *, debiased: bool = False) -> float:
    """Linear CKA of two activation matrices of the same n inputs (METHODS §8).

    CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F·‖YᵀY‖_F) on column-centred X [n, d₁], Y [n, d₂] (other shapes are
    flattened per input). Computed in feature space when n exceeds the widths, with n×n Grams
    otherwise (the same number). ``debiased=True`` uses Song et al.'s unbiased HSIC₁ (needs n ≥ 4).
    Constant features give 0. Source: Kornblith et al., ICML 2019, arXiv 1905.00414.
    The computation is ``kdcore.cka.linear_cka`` (the runner's probe CKA uses it too).
    """
    return core.linear_cka(X, Y, debiased=debiased)


def rbf_cka(X: Any, Y: Any, *, sigma: float = 1.0) -> float:
    """RBF-kernel CKA (METHODS §8): K_ij = exp(−‖x_i − x_j‖²/(2σ²)), σ² = sigma²·median squared distance.

    CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) with centred Grams; the median is over the full n×n
    matrix, diagonal included (Kornblith et al.'s code). When more than half the pairs coincide the
    median of the non-zero distances is used instead. Computed by ``kdcore.cka.rbf_cka``.
    Source: Kornblith et al., ICML 2019, arXiv 1905.00414.
    """
    return core.rbf_cka(X, Y, sigma=sigma)


# --------------------------------------------------------------------------- heatmaps
def _check_kind(kind: str, where: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of {where} must be one of {KINDS}. Got {kind!r} instead.")


def _layer_dict(name: str, features: Any, where: str) -> dict[str, Tensor]:
    if not isinstance(features, Mapping) or not features:
        raise ValueError(
            f"The '{name}' argument of {where} must be a non-empty mapping from layer name to "
            f"activations [n, ...]. Got {type(features).__name__} instead."
        )
    return {str(k): core.as_features(f"{name}[{k!r}]", v, where) for k, v in features.items()}


def _frame(values: Tensor, rows: Sequence[str], cols: Sequence[str], constant: Iterable[str], **attrs) -> pd.DataFrame:
    df = pd.DataFrame(
        values.cpu().numpy(), index=pd.Index(list(rows), name="layer_a"), columns=pd.Index(list(cols), name="layer_b")
    )
    df.attrs.update(constant_layers=sorted(set(constant)), **attrs)
    return df


def _check_inputs(fa: Mapping[str, Tensor], fb: Mapping[str, Tensor], where: str, debiased: bool) -> int:
    """The common number of inputs n of every layer (n ≥ 4 when debiased, else n ≥ 2)."""
    ns = {t.shape[0] for t in (*fa.values(), *fb.values())}
    if len(ns) != 1:
        raise ValueError(f"Every layer in {where} must hold the same inputs; got row counts {sorted(ns)}.")
    n = ns.pop()
    if n < (4 if debiased else 2):
        raise ValueError(f"{where} needs at least {4 if debiased else 2} inputs. Got {n}.")
    return n


def _matrix_frame(m: core.CkaMatrix, fa: Mapping[str, Tensor], fb: Mapping[str, Tensor], **attrs) -> pd.DataFrame:
    constant = [k for k, c in zip(fa, m.constant_a) if c] + [k for k, c in zip(fb, m.constant_b) if c]
    return _frame(m.values, list(fa), list(fb), constant, **attrs)


def _linear_matrix(fa: Mapping[str, Tensor], fb: Mapping[str, Tensor], debiased: bool) -> core.CkaMatrix:
    return core.linear_cka_matrix(list(fa.values()), list(fb.values()), debiased=debiased)


def _rbf_matrix(fa: Mapping[str, Tensor], fb: Mapping[str, Tensor], debiased: bool) -> core.CkaMatrix:
    return core.rbf_cka_matrix(list(fa.values()), list(fb.values()), sigma=1.0, debiased=debiased)


_MATRIX_BY_KIND = {"linear": _linear_matrix, "rbf": _rbf_matrix}


def _dominance_rows(side: str, doms: Mapping[str, tok.Dominance]) -> list[dict[str, Any]]:
    return [
        {"side": side, "layer": k, "share": d.share, "dims": list(d.dims), "dominated": d.dominated}
        for k, d in doms.items()
    ]


def _dominance_attrs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rule = {"top_k": tok.DOMINANCE_TOP_K, "threshold": tok.DOMINANCE_THRESHOLD}
    return {"dominance": rows, "dominance_rule": rule}


def cka_matrix(
    features_a: Mapping[str, Any], features_b: Mapping[str, Any], *, kind: str = "linear", debiased: bool = False
) -> pd.DataFrame:
    """CKA between every layer of model a (rows) and every layer of model b (columns), all inputs at once.

    ``features_*`` map layer name -> activations [n, ...] of the same n inputs (flattened per input;
    see ``prepare_features`` for tokens). Linear CKA centres each layer once and uses ‖YᵀX‖²_F, or
    n×n Grams when the inputs are fewer than the mean width; RBF builds one Gram per layer (σ scale 1).
    ``debiased`` applies HSIC₁ (n ≥ 4). Constant layers get 0 and are listed in
    ``attrs["constant_layers"]``. ``attrs["dominance"]`` gives, per layer, the share of its centred
    squared norm held by its top-k dimensions (``kdcore.cka_tokens.dominance``; see
    ``dominance_table`` and ``dominance_warning``). To stream many inputs through bounded memory use ``MinibatchCKA``.
    Source: Kornblith et al., ICML 2019, arXiv 1905.00414. Computed by ``kdcore.cka``.
    """
    where = "cka_matrix"
    _check_kind(kind, where)
    fa, fb = _layer_dict("features_a", features_a, where), _layer_dict("features_b", features_b, where)
    n = _check_inputs(fa, fb, where, debiased)
    m = _MATRIX_BY_KIND[kind](fa, fb, debiased)
    dominance = _dominance_rows("a", {k: tok.dominance(v) for k, v in fa.items()})
    dominance += _dominance_rows("b", {k: tok.dominance(v) for k, v in fb.items()})
    return _matrix_frame(
        m, fa, fb, kind=kind, debiased=bool(debiased), n_inputs=n, method="full", **_dominance_attrs(dominance)
    )


class MinibatchCKA:
    """Minibatch CKA heatmap (Nguyen, Raghu & Kornblith, ICLR 2021, arXiv 2010.15327; METHODS §8).

    Feed batches of activations of the same inputs for both models with ``update(features_a,
    features_b)``; ``result()`` returns the heatmap DataFrame
    CKA = mean_k HSIC₁(K_k, L_k) / √(mean_k HSIC₁(K_k, K_k)·mean_k HSIC₁(L_k, L_k)).
    Memory is bounded by one batch: per batch one Gram per layer [b, b], then every pair at once.
    Each batch needs at least 4 inputs (use ``drop_last=True`` on a DataLoader). ``kind="rbf"``
    takes σ from each batch's median distance (sigma scale ``sigma``).
    """

    def __init__(self, layers_a: Sequence[str], layers_b: Sequence[str], *, kind: str = "linear", sigma: float = 1.0):
        _check_kind(kind, "MinibatchCKA")
        self.layers_a, self.layers_b = [str(k) for k in layers_a], [str(k) for k in layers_b]
        if not self.layers_a or not self.layers_b:
            raise ValueError(
                "The 'layers_a' and 'layers_b' parameters of MinibatchCKA must each name at least one layer."
            )
        self.kind = kind  # "linear" or "rbf"
        self.sigma = check_positive("sigma", sigma, where="MinibatchCKA")  # RBF width scale
        self.cross = torch.zeros(len(self.layers_a), len(self.layers_b), dtype=torch.float64)  # Σ_k HSIC₁(K_k, L_k)
        self.self_a = torch.zeros(len(self.layers_a), dtype=torch.float64)  # Σ_k HSIC₁(K_k, K_k)
        self.self_b = torch.zeros(len(self.layers_b), dtype=torch.float64)  # Σ_k HSIC₁(L_k, L_k)
        self.batches = 0
        self.inputs = 0
        self.moments_a: list[tok.Moments | None] = [None] * len(self.layers_a)  # per layer, for dominance
        self.moments_b: list[tok.Moments | None] = [None] * len(self.layers_b)

    def _grams(self, name: str, feats: Mapping[str, Any], layers: Sequence[str]) -> tuple[Tensor, list[tok.Moments]]:
        missing = [k for k in layers if k not in feats]
        if missing:
            raise ValueError(
                f"The '{name}' argument of MinibatchCKA.update lacks layers {missing}; it has {list(feats)}."
            )
        grams = []
        moments = []
        for k in layers:
            x = core.as_features(f"{name}[{k!r}]", feats[k], "MinibatchCKA.update")
            moments.append(tok.moments(x))
            if self.kind == "rbf":
                g, constant = core.rbf_gram(x, self.sigma)
            else:
                xc = x - x.mean(0)
                g, constant = xc @ xc.T, core.is_constant(x, xc)  # [b, b]
            # a batch where the layer is constant adds exactly 0 (HSIC₁ of a constant kernel is 0)
            grams.append(torch.zeros_like(g) if constant else g.fill_diagonal_(0.0))
        return torch.stack(grams), moments  # [layers, b, b], zero diagonals; per-layer moments of the batch

    def update(self, features_a: Mapping[str, Any], features_b: Mapping[str, Any]) -> MinibatchCKA:
        """Add one minibatch (the same b ≥ 4 inputs through both models)."""
        ga, ma = self._grams("features_a", features_a, self.layers_a)  # [A, b, b]
        gb, mb = self._grams("features_b", features_b, self.layers_b)  # [B, b, b]
        b = ga.shape[1]
        if gb.shape[1] != b:
            raise ValueError(
                f"features_a and features_b of MinibatchCKA.update must hold the same inputs. "
                f"Got batches of {b} and {gb.shape[1]}."
            )
        if b < 4:
            raise ValueError(
                f"Each batch of MinibatchCKA.update needs at least 4 inputs (HSIC₁ divides by n−3). "
                f"Got {b}. Drop the short last batch (DataLoader(drop_last=True))."
            )
        ra, rb = ga.sum(2), gb.sum(2)  # K̃1: [A, b], [B, b]
        sa, sb = ra.sum(1), rb.sum(1)  # 1ᵀK̃1: [A], [B]
        fa, fb = ga.reshape(ga.shape[0], -1), gb.reshape(gb.shape[0], -1)  # [A, b²], [B, b²]
        self.cross += core.hsic1(fa @ fb.T, sa[:, None], sb[None, :], ra @ rb.T, b).cpu()
        self.self_a += core.hsic1((fa * fa).sum(1), sa, sa, (ra * ra).sum(1), b).cpu()
        self.self_b += core.hsic1((fb * fb).sum(1), sb, sb, (rb * rb).sum(1), b).cpu()
        self.moments_a = [tok.merge_moments(old, new) for old, new in zip(self.moments_a, ma)]
        self.moments_b = [tok.merge_moments(old, new) for old, new in zip(self.moments_b, mb)]
        self.batches += 1
        self.inputs += b
        return self

    def result(self) -> pd.DataFrame:
        """The heatmap so far: rows = layers of a, columns = layers of b."""
        if self.batches == 0:
            raise ValueError("MinibatchCKA.result needs at least one batch: call update(...) first.")
        ok_a, ok_b = self.self_a > 0, self.self_b > 0
        constant = [k for k, ok in zip(self.layers_a, ok_a.tolist()) if not ok]
        constant += [k for k, ok in zip(self.layers_b, ok_b.tolist()) if not ok]
        vals = core.safe_ratio(self.cross, self.self_a[:, None], self.self_b[None, :])
        dominance = []
        for side, layers, moments in (("a", self.layers_a, self.moments_a), ("b", self.layers_b, self.moments_b)):
            doms = {k: tok.dominance_from_variance(m.m2) for k, m in zip(layers, moments) if m is not None}
            dominance += _dominance_rows(side, doms)
        return _frame(
            vals,
            self.layers_a,
            self.layers_b,
            constant,
            kind=self.kind,
            debiased=True,
            n_inputs=self.inputs,
            method=f"minibatch ({self.batches} batches)",
            **_dominance_attrs(dominance),
        )


def minibatch_cka_matrix(
    batches: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]], *, kind: str = "linear", sigma: float = 1.0
) -> pd.DataFrame:
    """Stream ``(features_a, features_b)`` batches through ``MinibatchCKA`` and return the heatmap."""
    acc = None
    for fa, fb in batches:
        if acc is None:
            acc = MinibatchCKA(list(fa), list(fb), kind=kind, sigma=sigma)
        acc.update(fa, fb)
    if acc is None:
        raise ValueError("The 'batches' argument of minibatch_cka_matrix yielded no batch.")
    return acc.result()


def pair_cka(
    model_a: Any,
    model_b: Any,
    inputs: Any,
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    kind: str = "linear",
    debiased: bool = False,
    batch_size: int | None = None,
    tokens: str = "flatten",
    mask: Any = None,
    drop_first: bool = False,
    special_ids: Iterable[int] | None = None,
) -> pd.DataFrame:
    """CKA heatmap of two kdcore ModelAdapters (teacher vs student, or one model against itself).

    Layers default to each adapter's ``default_layers()``. With ``batch_size`` the inputs stream in
    minibatches through ``MinibatchCKA`` (always debiased; a short last batch is dropped);
    otherwise all features are captured at once and ``cka_matrix`` is used.
    Token inputs (ids [n, L]) with ``tokens`` "mean" or "per_token": ``mask`` [n, L] is the
    attention mask (padding dropped, and given to Hugging Face models), ``drop_first`` drops
    position 0, ``special_ids`` drops every token with one of these ids (see ``prepare_features``).
    The options are recorded in ``attrs["token_options"]``.
    """
    where = "pair_cka"
    la = list(layers_a) if layers_a is not None else list(model_a.default_layers())
    lb = list(layers_b) if layers_b is not None else list(model_b.default_layers())
    n = len(inputs)
    same = model_a is model_b and la == lb

    def capture(lo: int, hi: int):
        m = None if mask is None else mask[lo:hi]
        special = _special_positions(inputs[lo:hi], special_ids, tokens, where)
        opts: dict[str, Any] = {"tokens": tokens, "mask": m, "drop_first": drop_first, "special": special}
        fa = prepare_features(model_a.capture(_model_inputs(model_a, inputs[lo:hi], m), la), **opts)
        fb = fa if same else prepare_features(model_b.capture(_model_inputs(model_b, inputs[lo:hi], m), lb), **opts)
        return fa, fb

    if batch_size is None:
        fa, fb = capture(0, n)
        out = cka_matrix(fa, fb, kind=kind, debiased=debiased)
    else:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 4:
            raise ValueError(
                f"The 'batch_size' parameter of {where} must be an integer >= 4. Got {batch_size!r} instead."
            )
        stops = range(batch_size, n + 1, batch_size)
        out = minibatch_cka_matrix((capture(hi - batch_size, hi) for hi in stops), kind=kind)
    out.attrs.update(model_a=getattr(model_a, "name", "model a"), model_b=getattr(model_b, "name", "model b"))
    if tokens != "flatten":
        out.attrs["token_options"] = {
            "pool": tokens,
            "drop_first": bool(drop_first),
            "drop_special": special_ids is not None,
            "padding_masked": mask is not None,
            "texts": n,
        }
    return out


def _special_positions(ids: Any, special_ids: Iterable[int] | None, tokens: str, where: str) -> Tensor | None:
    """[n, L] True where ids holds one of special_ids (None when there is nothing to drop)."""
    if special_ids is None or tokens == "flatten":
        return None
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point():
        raise ValueError(
            f"The 'special_ids' parameter of {where} needs token ids [n, L] as inputs to find the special tokens. "
            f"Got {type(ids).__name__} inputs{'' if not isinstance(ids, Tensor) else f' of shape {tuple(ids.shape)}'}."
        )
    return ~tok.keep_mask((ids.shape[0], ids.shape[1]), input_ids=ids, special_ids=special_ids, where=where)


def _model_inputs(model: Any, ids: Any, mask: Any) -> Any:
    """Token ids with their attention mask for a Hugging Face model (padding must not be attended to);
    the ids alone for other adapters."""
    from kdcore.adapters.hf import HFAdapter

    if mask is None or not isinstance(model, HFAdapter):
        return ids
    return {"input_ids": ids, "attention_mask": torch.as_tensor(mask).long()}


# --------------------------------------------------------------------------- dominance
def dominance_table(result: pd.DataFrame) -> pd.DataFrame:
    """Per layer of a CKA result: model, layer, share (of the centred squared norm held by the top-k
    dimensions), dims (those dimensions) and dominated (share above the threshold). One row per
    (model, layer), so a model against itself lists its layers once."""
    names = {"a": result.attrs.get("model_a", "model a"), "b": result.attrs.get("model_b", "model b")}
    rows = [{**r, "model": names[r["side"]]} for r in result.attrs.get("dominance", [])]
    cols = ["model", "layer", "share", "dims", "dominated"]
    df = pd.DataFrame(rows, columns=["side", *cols])
    return df.drop_duplicates(subset=["model", "layer"]).loc[:, cols].reset_index(drop=True)


def dominance_warning(result: pd.DataFrame) -> str | None:
    """A sentence naming the layers whose top-k dimensions hold more than the threshold share of the
    centred squared norm, with their shares; None when no layer is dominated."""
    table = dominance_table(result)
    bad = table[table["dominated"]]
    if not len(bad):
        return None
    rule = result.attrs.get("dominance_rule", {"top_k": tok.DOMINANCE_TOP_K, "threshold": tok.DOMINANCE_THRESHOLD})
    listed = ", ".join(f"{r.model} {r.layer} ({r.share:.0%}, dims {list(r.dims)})" for r in bad.itertuples())
    return (
        f"A few dimensions dominate {len(bad)} layer(s): the top {rule['top_k']} dimensions hold more than "
        f"{rule['threshold']:.0%} of the centred squared norm in {listed}. Linear CKA of these layers mostly "
        f"compares those few coordinates (outlier dimensions), so a high value says little about the rest."
    )


# --------------------------------------------------------------------------- figures
def _heatmap_trace(result: pd.DataFrame, *, showscale: bool = True) -> go.Heatmap:
    a, b = result.attrs.get("model_a", "model a"), result.attrs.get("model_b", "model b")
    constant = set(result.attrs.get("constant_layers", []))
    rows, cols = [str(r) for r in result.index], [str(c) for c in result.columns]
    z = result.to_numpy(dtype=float)
    text = [
        [
            f"{a}: {r}<br>{b}: {c}<br>CKA = {z[i, j]:.3f}"
            + ("<br>(constant features: CKA set to 0)" if r in constant or c in constant else "")
            for j, c in enumerate(cols)
        ]
        for i, r in enumerate(rows)
    ]
    return go.Heatmap(
        z=z,
        x=cols,
        y=rows,
        zmin=0.0,
        zmax=1.0,
        colorscale=_style.SEQUENTIAL,
        text=text,
        hovertemplate="%{text}<extra></extra>",
        showscale=showscale,
        colorbar={"title": {"text": "CKA (0–1)"}},
    )


def _describe(result: pd.DataFrame) -> str:
    kind = result.attrs.get("kind", "linear")
    label = ("debiased " if result.attrs.get("debiased") else "") + kind
    n = result.attrs.get("n_inputs")
    opts = result.attrs.get("token_options")
    rows = ""
    if opts:
        dropped = [w for w, on in (("first token", opts["drop_first"]), ("special tokens", opts["drop_special"])) if on]
        unit = "texts (tokens mean-pooled)" if opts["pool"] == "mean" else "token rows"
        rows = f" {unit}" + (f"; {' and '.join(dropped)} dropped" if dropped else "")
    return f"{label} CKA" + (f", n = {n}{rows or ' inputs'}" if n else "")


def figure_heatmap(result: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Layer×layer CKA heatmap: rows = layers of model a (first layer at the top), columns = model b."""
    a, b = result.attrs.get("model_a", "model a"), result.attrs.get("model_b", "model b")
    fig = go.Figure(_heatmap_trace(result))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-45)
    size = max(420, 28 * len(result.index) + 160)
    return _style.finish(
        fig,
        title=title or f"{_describe(result)}: {a} vs {b}",
        x=f"{b} layer (input → output)",
        y=f"{a} layer (input → output)",
        height=size,
        legend=False,
    )


def figure_heatmaps(results: Mapping[str, pd.DataFrame], *, title: str = "CKA side by side") -> go.Figure:
    """Several heatmaps side by side (e.g. teacher vs student, teacher vs itself), one colour scale."""
    if not results:
        raise ValueError("The 'results' argument of figure_heatmaps must hold at least one heatmap.")
    names = list(results)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.12)
    for i, name in enumerate(names, start=1):
        r = results[name]
        fig.add_trace(_heatmap_trace(r, showscale=(i == len(names))), row=1, col=i)
        fig.update_yaxes(
            autorange="reversed",
            type="category",
            row=1,
            col=i,
            title_text=f"{r.attrs.get('model_a', 'model a')} layer (input → output)",
        )
        fig.update_xaxes(
            type="category",
            tickangle=-45,
            row=1,
            col=i,
            title_text=f"{r.attrs.get('model_b', 'model b')} layer (input → output)",
        )
    height = max(420, 28 * max(len(r.index) for r in results.values()) + 160)
    return _style.finish(fig, title=title, height=height, legend=False)
