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
    "figure_heatmap",
    "figure_heatmaps",
]

KINDS = ("linear", "rbf")


# --------------------------------------------------------------------------- inputs
def prepare_features(features: Mapping[str, Any], *, tokens: str = "flatten", mask: Any = None) -> dict[str, Tensor]:
    """Turn captured activations into [n, d] matrices for CKA.

    ``tokens``: "flatten" (every tensor flattened per input: conv [n, C, H, W] -> [n, C·H·W]);
    "mean" (token features [n, L, d] mean-pooled over the kept tokens -> [n, d]);
    "per_token" (every kept token is one input -> [n·L_kept, d]). ``mask`` [n, L] (bool or 0/1)
    marks the kept tokens (padding out); both models see the same inputs, so the same mask applies.
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
        keep = (
            torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            if mask is None
            else torch.as_tensor(mask, device=x.device).bool()
        )
        if keep.shape != x.shape[:2]:
            raise ValueError(
                f"The 'mask' parameter of {where} must have shape {tuple(x.shape[:2])} (inputs, tokens). Got {tuple(keep.shape)} instead."
            )
        if tokens == "mean":
            counts = keep.sum(1, keepdim=True)  # [n, 1]
            if bool((counts == 0).any()):
                raise ValueError(
                    f"The 'mask' parameter of {where} keeps no token for some inputs: every input needs at least one."
                )
            out[name] = (x * keep[..., None]).sum(1) / counts  # [n, d]
        else:
            out[name] = x[keep]  # [n·L_kept, d]
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


def cka_matrix(
    features_a: Mapping[str, Any], features_b: Mapping[str, Any], *, kind: str = "linear", debiased: bool = False
) -> pd.DataFrame:
    """CKA between every layer of model a (rows) and every layer of model b (columns), all inputs at once.

    ``features_*`` map layer name -> activations [n, ...] of the same n inputs (flattened per input;
    see ``prepare_features`` for tokens). Linear CKA centres each layer once and uses ‖YᵀX‖²_F, or
    n×n Grams when the inputs are fewer than the mean width; RBF builds one Gram per layer (σ scale 1).
    ``debiased`` applies HSIC₁ (n ≥ 4). Constant layers get 0 and are listed in
    ``attrs["constant_layers"]``. To stream many inputs through bounded memory use ``MinibatchCKA``.
    Source: Kornblith et al., ICML 2019, arXiv 1905.00414. Computed by ``kdcore.cka``.
    """
    where = "cka_matrix"
    _check_kind(kind, where)
    fa, fb = _layer_dict("features_a", features_a, where), _layer_dict("features_b", features_b, where)
    n = _check_inputs(fa, fb, where, debiased)
    m = _MATRIX_BY_KIND[kind](fa, fb, debiased)
    return _matrix_frame(m, fa, fb, kind=kind, debiased=bool(debiased), n_inputs=n, method="full")


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

    def _grams(self, name: str, feats: Mapping[str, Any], layers: Sequence[str]) -> Tensor:
        missing = [k for k in layers if k not in feats]
        if missing:
            raise ValueError(
                f"The '{name}' argument of MinibatchCKA.update lacks layers {missing}; it has {list(feats)}."
            )
        grams = []
        for k in layers:
            x = core.as_features(f"{name}[{k!r}]", feats[k], "MinibatchCKA.update")
            if self.kind == "rbf":
                g, constant = core.rbf_gram(x, self.sigma)
            else:
                xc = x - x.mean(0)
                g, constant = xc @ xc.T, core.is_constant(x, xc)  # [b, b]
            # a batch where the layer is constant adds exactly 0 (HSIC₁ of a constant kernel is 0)
            grams.append(torch.zeros_like(g) if constant else g.fill_diagonal_(0.0))
        return torch.stack(grams)  # [layers, b, b], zero diagonals

    def update(self, features_a: Mapping[str, Any], features_b: Mapping[str, Any]) -> MinibatchCKA:
        """Add one minibatch (the same b ≥ 4 inputs through both models)."""
        ga = self._grams("features_a", features_a, self.layers_a)  # [A, b, b]
        gb = self._grams("features_b", features_b, self.layers_b)  # [B, b, b]
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
        return _frame(
            vals,
            self.layers_a,
            self.layers_b,
            constant,
            kind=self.kind,
            debiased=True,
            n_inputs=self.inputs,
            method=f"minibatch ({self.batches} batches)",
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
) -> pd.DataFrame:
    """CKA heatmap of two kdcore ModelAdapters (teacher vs student, or one model against itself).

    Layers default to each adapter's ``default_layers()``. With ``batch_size`` the inputs stream in
    minibatches through ``MinibatchCKA`` (always debiased; a short last batch is dropped);
    otherwise all features are captured at once and ``cka_matrix`` is used.
    """
    where = "pair_cka"
    la = list(layers_a) if layers_a is not None else list(model_a.default_layers())
    lb = list(layers_b) if layers_b is not None else list(model_b.default_layers())
    n = len(inputs)
    same = model_a is model_b and la == lb

    def capture(lo: int, hi: int):
        m = None if mask is None else mask[lo:hi]
        fa = prepare_features(model_a.capture(inputs[lo:hi], la), tokens=tokens, mask=m)
        fb = fa if same else prepare_features(model_b.capture(inputs[lo:hi], lb), tokens=tokens, mask=m)
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
    return out


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
    return f"{label} CKA" + (f", n = {n} inputs" if n else "")


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
