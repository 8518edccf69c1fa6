"""Centered kernel alignment: the one CKA core of the project (METHODS §8).

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited",
ICML 2019 (arXiv 1905.00414). X (n×d₁) and Y (n×d₂) are the activations of the same n inputs,
flattened per input.

- Linear: with column-centred X, Y, CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F·‖YᵀY‖_F) (feature space, used when
  n > d); the Gram form tr(KHLH)/√(tr(KHKH)·tr(LHLH)) with K = XXᵀ otherwise. Same number.
- RBF: K_ij = exp(−‖x_i − x_j‖²/(2σ²)), σ² = s²·median of the n×n squared distances (diagonal
  included, as in Kornblith et al.'s code); CKA from centred Grams.
- Debiased: Song et al. 2012's unbiased HSIC₁ on zero-diagonal Grams K̃, L̃ (JMLR 13), needs n ≥ 4:
  HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − (2/(n−2))·1ᵀK̃L̃1] / (n(n−3)).

A layer whose features are constant over the inputs has no similarity to speak of: its CKA is 0
(never NaN). Everything is computed in float64. The runner's probe metrics and ``analyses.cka``
(scalars, heatmaps, minibatch CKA) all call this module. Token features [n, L, H] of transformers
become rows with ``kdcore.cka_tokens`` (padding, first and special tokens dropped; mean or per-token
rows), which also measures how much of a layer's norm its top few dimensions hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kdcore.validation import InvalidParameterError, check_array, check_positive

__all__ = [
    "linear_cka",
    "rbf_cka",
    "linear_cka_matrix",
    "rbf_cka_matrix",
    "CkaMatrix",
    "as_features",
    "check_same_inputs",
    "is_constant",
    "hsic1",
    "safe_ratio",
    "centre_gram",
    "rbf_gram",
    "cka_from_grams",
    "linear_hsic1",
]

CONSTANT_RTOL = 1e-12  # centred features below this fraction of the largest |feature| count as constant


# --------------------------------------------------------------------------- inputs
def as_features(name: str, x: Any, where: str) -> Tensor:
    """Activations of n inputs (tensor or numpy array [n, ...]) -> float64 [n, d], flattened per input."""
    x = check_array(name, x, where=where, min_dim=1)
    return x.reshape(x.shape[0], -1)  # [n, d]


def check_same_inputs(x: Tensor, y: Tensor, where: str, min_n: int) -> None:
    """X and Y must hold the same n inputs, n ≥ min_n."""
    if x.shape[0] != y.shape[0]:
        raise InvalidParameterError(
            f"X and Y of {where} must hold the same inputs (the same number of rows). "
            f"Got {x.shape[0]} rows in X and {y.shape[0]} in Y."
        )
    if x.shape[0] < min_n:
        raise InvalidParameterError(f"{where} needs at least {min_n} inputs (rows). Got {x.shape[0]}.")


def is_constant(x: Tensor, xc: Tensor) -> bool:
    """True when the centred features xc are zero up to rounding (zero variance over the inputs)."""
    return bool(xc.abs().max() <= CONSTANT_RTOL * x.abs().max())


# --------------------------------------------------------------------------- HSIC building blocks
def hsic1(tr_kl: Tensor, sum_k: Tensor, sum_l: Tensor, k1_l1: Tensor, n: int) -> Tensor:
    """Unbiased HSIC₁ (Song et al. 2012) from the parts of zero-diagonal Grams K̃, L̃.

    tr_kl = tr(K̃L̃), sum_k = 1ᵀK̃1, sum_l = 1ᵀL̃1, k1_l1 = 1ᵀK̃L̃1 = (K̃1)ᵀ(L̃1). Broadcasts.
    """
    return (tr_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1_l1) / (n * (n - 3))


def linear_hsic1(cross: Tensor, kx: Tensor, ky: Tensor, n: int) -> Tensor:
    """HSIC₁ for linear kernels of column-centred features, without n×n Grams.

    With K = XXᵀ (X centred, so K1 = 0) and k = diag K: tr(K̃L̃) = ‖YᵀX‖² − kᵀl, 1ᵀK̃1 = −Σk,
    K̃1 = −k, so 1ᵀK̃L̃1 = kᵀl. ``kx``, ``ky`` may be stacked [.., n]; broadcasts.
    """
    kl = (kx * ky).sum(-1)
    return hsic1(cross - kl, -kx.sum(-1), -ky.sum(-1), kl, n)


def safe_ratio(cross: Tensor, self_a: Tensor, self_b: Tensor) -> Tensor:
    """cross / √(self_a·self_b), 0 where either self-similarity is not positive (constant features)."""
    denom = self_a.clamp_min(0) * self_b.clamp_min(0)
    ok = denom > 0
    return torch.where(ok, cross / torch.sqrt(torch.where(ok, denom, torch.ones_like(denom))), torch.zeros_like(cross))


def centre_gram(k: Tensor) -> Tensor:
    """H K H with H = I − 11ᵀ/n, without forming H. [n, n]"""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def _median_all(values: Tensor) -> Tensor:
    """numpy's median of every entry (the mean of the two middle values for an even count)."""
    flat = values.flatten().sort().values
    m = flat.numel()
    return flat[m // 2] if m % 2 else (flat[m // 2 - 1] + flat[m // 2]) / 2


def rbf_gram(x: Tensor, sigma: float) -> tuple[Tensor, bool]:
    """K_ij = exp(−‖x_i − x_j‖² / (2σ²)), σ² = sigma²·median of the n×n squared distances.

    x [n, d] float64 -> (Gram [n, n], whether every input is identical: a constant layer). When more
    than half the pairs coincide (median 0), the median of the non-zero distances is used instead.
    """
    sq = (x * x).sum(1)  # [n]
    dist = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0)  # [n, n]
    dist.fill_diagonal_(0.0)
    med = _median_all(dist)
    if med <= 0:
        positive = dist[dist > 0]
        if positive.numel() == 0:  # every input identical
            return torch.ones_like(dist), True
        med = positive.median()
    return torch.exp(-dist / (2.0 * sigma**2 * med)), False


def _debiased_from_grams(k: Tensor, g: Tensor) -> Tensor:
    """HSIC₁(K, L) / √(HSIC₁(K, K)·HSIC₁(L, L)) from two n×n Grams K = k, L = g."""
    n = k.shape[0]
    kt, lt = k.clone().fill_diagonal_(0.0), g.clone().fill_diagonal_(0.0)
    rk, rl = kt.sum(1), lt.sum(1)  # K̃1, L̃1 [n]

    def h(a: Tensor, ra: Tensor, b: Tensor, rb: Tensor) -> Tensor:
        return hsic1((a * b).sum(), ra.sum(), rb.sum(), ra @ rb, n)

    return safe_ratio(h(kt, rk, lt, rl), h(kt, rk, kt, rk), h(lt, rl, lt, rl))


def cka_from_grams(k: Tensor, g: Tensor, *, debiased: bool = False) -> float:
    """CKA from two n×n Grams K = k, L = g of non-constant layers (biased: centred; debiased: HSIC₁)."""
    if debiased:
        return float(_debiased_from_grams(k, g))
    kc, lc = centre_gram(k), centre_gram(g)
    return float(safe_ratio((kc * lc).sum(), (kc * kc).sum(), (lc * lc).sum()))


# --------------------------------------------------------------------------- scalars
def _linear_feature_space(xc: Tensor, yc: Tensor, debiased: bool) -> float:
    """Linear CKA of column-centred xc [n, d₁], yc [n, d₂] with d×d products only."""
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    sxx, syy = torch.linalg.matrix_norm(xc.T @ xc) ** 2, torch.linalg.matrix_norm(yc.T @ yc) ** 2
    if not debiased:
        return float(safe_ratio(cross, sxx, syy))
    n = xc.shape[0]
    kx, ky = (xc * xc).sum(1), (yc * yc).sum(1)  # diagonals of the Grams [n]
    return float(safe_ratio(linear_hsic1(cross, kx, ky, n), linear_hsic1(sxx, kx, kx, n), linear_hsic1(syy, ky, ky, n)))


def linear_cka(X: Any, Y: Any, *, debiased: bool = False) -> float:
    """Linear CKA of the activations X [n, ...] and Y [n, ...] of the same n inputs (METHODS §8).

    Feature-space form when n exceeds both widths, Gram form otherwise (the same number).
    ``debiased=True`` uses HSIC₁ (n ≥ 4). Constant features give 0.
    """
    where = "linear_cka"
    x, y = as_features("X", X, where), as_features("Y", Y, where)
    check_same_inputs(x, y, where, 4 if debiased else 2)
    xc, yc = x - x.mean(0), y - y.mean(0)
    if is_constant(x, xc) or is_constant(y, yc):
        return 0.0
    if x.shape[0] > max(x.shape[1], y.shape[1]):
        return _linear_feature_space(xc, yc, debiased)
    return cka_from_grams(xc @ xc.T, yc @ yc.T, debiased=debiased)


def rbf_cka(X: Any, Y: Any, *, sigma: float = 1.0, debiased: bool = False) -> float:
    """RBF-kernel CKA of X [n, ...] and Y [n, ...] (METHODS §8), σ² = sigma²·median squared distance.

    ``debiased=True`` uses HSIC₁ on the RBF Grams (n ≥ 4). Identical inputs throughout give 0.
    """
    where = "rbf_cka"
    s = check_positive("sigma", sigma, where=where)
    x, y = as_features("X", X, where), as_features("Y", Y, where)
    check_same_inputs(x, y, where, 4 if debiased else 2)
    (kx, cx), (ky, cy) = rbf_gram(x, s), rbf_gram(y, s)
    return 0.0 if cx or cy else cka_from_grams(kx, ky, debiased=debiased)


# --------------------------------------------------------------------------- layer × layer matrices
@dataclass(frozen=True)
class CkaMatrix:
    """CKA of every layer of a (rows) against every layer of b (columns)."""

    values: Tensor  # [A, B] float64, 0 where either layer is constant
    constant_a: tuple[bool, ...]  # [A] whether layer i of a is constant over the inputs
    constant_b: tuple[bool, ...]  # [B] idem for b


def _same_n(fa: Sequence[Tensor], fb: Sequence[Tensor], where: str, min_n: int) -> int:
    if not fa or not fb:
        raise InvalidParameterError(f"{where} needs at least one layer on each side. Got {len(fa)} and {len(fb)}.")
    ns = {t.shape[0] for t in (*fa, *fb)}
    if len(ns) != 1:
        raise InvalidParameterError(f"Every layer in {where} must hold the same inputs; got row counts {sorted(ns)}.")
    n = ns.pop()
    if n < min_n:
        raise InvalidParameterError(f"{where} needs at least {min_n} inputs. Got {n}.")
    return n


def _mask_constant(values: Tensor, const_a: Sequence[bool], const_b: Sequence[bool]) -> Tensor:
    bad = (
        torch.tensor(list(const_a), dtype=torch.bool)[:, None] | torch.tensor(list(const_b), dtype=torch.bool)[None, :]
    )
    return values.masked_fill(bad.to(values.device), 0.0)


def _grams_matrix(
    grams_a: Sequence[Tensor],
    grams_b: Sequence[Tensor],
    const_a: Sequence[bool],
    const_b: Sequence[bool],
    debiased: bool,
) -> Tensor:
    """[A, B] CKA from one n×n Gram per layer; pairs with a constant layer are 0."""
    rows = [
        [0.0 if ca or cb else cka_from_grams(ka, kb, debiased=debiased) for kb, cb in zip(grams_b, const_b)]
        for ka, ca in zip(grams_a, const_a)
    ]
    return torch.tensor(rows, dtype=torch.float64)


def _linear_feature_matrix(ca: Sequence[Tensor], cb: Sequence[Tensor], n: int, debiased: bool) -> Tensor:
    """[A, B] linear CKA of centred layers in feature space: ‖YᵀX‖² per pair, self terms once per layer."""
    self_a = torch.stack([torch.linalg.matrix_norm(v.T @ v) ** 2 for v in ca])  # [A]
    self_b = torch.stack([torch.linalg.matrix_norm(v.T @ v) ** 2 for v in cb])  # [B]
    cross = torch.stack([torch.stack([torch.linalg.matrix_norm(vb.T @ va) ** 2 for vb in cb]) for va in ca])  # [A, B]
    if debiased:
        ka = torch.stack([(v * v).sum(1) for v in ca])  # [A, n]
        kb = torch.stack([(v * v).sum(1) for v in cb])  # [B, n]
        cross = linear_hsic1(cross, ka[:, None, :], kb[None, :, :], n)
        self_a, self_b = linear_hsic1(self_a, ka, ka, n), linear_hsic1(self_b, kb, kb, n)
    return safe_ratio(cross, self_a[:, None], self_b[None, :])


def linear_cka_matrix(
    features_a: Sequence[Tensor], features_b: Sequence[Tensor], *, debiased: bool = False
) -> CkaMatrix:
    """Linear CKA of every layer pair; layers are float64 [n, d] (see ``as_features``).

    Each layer is centred once; n×n Grams are used when the inputs are fewer than the mean width,
    the feature-space form otherwise.
    """
    n = _same_n(features_a, features_b, "linear_cka_matrix", 4 if debiased else 2)
    ca, cb = [v - v.mean(0) for v in features_a], [v - v.mean(0) for v in features_b]
    const_a = tuple(is_constant(v, c) for v, c in zip(features_a, ca))
    const_b = tuple(is_constant(v, c) for v, c in zip(features_b, cb))
    widths = [v.shape[1] for v in (*ca, *cb)]
    if n < sum(widths) / len(widths):
        values = _grams_matrix([v @ v.T for v in ca], [v @ v.T for v in cb], const_a, const_b, debiased)
    else:
        values = _mask_constant(_linear_feature_matrix(ca, cb, n, debiased), const_a, const_b)
    return CkaMatrix(values, const_a, const_b)


def rbf_cka_matrix(
    features_a: Sequence[Tensor], features_b: Sequence[Tensor], *, sigma: float = 1.0, debiased: bool = False
) -> CkaMatrix:
    """RBF CKA of every layer pair (one Gram per layer, σ scale ``sigma``); layers float64 [n, d]."""
    _same_n(features_a, features_b, "rbf_cka_matrix", 4 if debiased else 2)
    s = check_positive("sigma", sigma, where="rbf_cka_matrix")
    ga, gb = [rbf_gram(v, s) for v in features_a], [rbf_gram(v, s) for v in features_b]
    const_a, const_b = tuple(c for _, c in ga), tuple(c for _, c in gb)
    values = _grams_matrix([k for k, _ in ga], [k for k, _ in gb], const_a, const_b, debiased)
    return CkaMatrix(values, const_a, const_b)
