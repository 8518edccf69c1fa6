"""Token-sequence features for CKA on transformers: which tokens count, how rows are formed, and
whether a few dimensions dominate (METHODS §8; used by ``kdcore.cka``'s callers).

A transformer layer's features are [n, L, H]: n texts of L tokens, H dimensions. CKA compares two
matrices of rows × features, so the tokens must become rows. Two known effects make raw CKA
between the layers of a language model read ≈ 1 almost everywhere:

- **The first token.** In a causal LM the first position attends only to itself: its hidden state
  is nearly the same in every text and typically carries massive activations (the "attention
  sink": Xiao et al. 2023, arXiv 2309.17453; Sun et al. 2024, "Massive activations in large
  language models", arXiv 2402.17762). As per-token rows these form one far-away cluster that
  every layer shares, and CKA measures little else. Encoders' [CLS]/[SEP] tokens behave alike.
- **Outlier dimensions.** A few dimensions of huge magnitude can hold most of the centred squared
  norm (Timkey & van Schijndel 2021, "All bark and no bite: rogue dimensions in transformer
  language models obscure representational quality", EMNLP), so linear CKA compares those few
  coordinates only.

Options (``keep_mask`` and ``pool_tokens``): padding is always dropped (attention mask 0);
``drop_first`` drops position 0 of every row; special tokens (given as a mask of positions or as
ids) are dropped; ``pool="mean"`` averages the kept tokens of each text (one row per text),
``pool="per_token"`` makes every kept token a row. ``dominance`` reports the share of the centred
squared norm, Σ_i (x_ij − x̄_j)², held by the top-k dimensions, computed on the rows CKA sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kdcore.validation import InvalidParameterError, check_array, check_int_range, check_range

__all__ = [
    "POOLS",
    "DOMINANCE_TOP_K",
    "DOMINANCE_THRESHOLD",
    "keep_mask",
    "pool_tokens",
    "Dominance",
    "Moments",
    "dominance",
    "dominance_from_variance",
    "moments",
    "merge_moments",
]

POOLS = ("mean", "per_token")  # one row per text (mean over kept tokens), or one row per kept token
DOMINANCE_TOP_K = 3  # "a few dimensions": the k largest dimensions' share is reported
DOMINANCE_THRESHOLD = 0.5  # a layer is flagged when its top-k dimensions hold more than this share
_MIN_DIMS_PER_K = 4  # with fewer than 4·k dimensions, k of them hold a large share anyway: never flagged


# --------------------------------------------------------------------------- which tokens count
def _bool_mask(name: str, mask: Any, shape: tuple[int, int], where: str) -> Tensor:
    m = torch.as_tensor(mask)
    if tuple(m.shape) != shape:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must have shape {shape} (texts, tokens), one entry per token. "
            f"Got shape {tuple(m.shape)} instead."
        )
    return m.bool()


def keep_mask(
    shape: tuple[int, int],
    *,
    attention_mask: Any = None,
    special_mask: Any = None,
    input_ids: Any = None,
    special_ids: Iterable[int] | None = None,
    drop_first: bool = False,
    where: str = "keep_mask",
) -> Tensor:
    """[n, L] bool: the tokens whose features become CKA rows.

    attention_mask [n, L]: 1 on real tokens, 0 on padding (padding is always dropped).
    special_mask [n, L]: True on special tokens (dropped); or input_ids [n, L] with special_ids.
    drop_first: drop position 0 of every text (the BOS / attention-sink / [CLS] token).
    """
    n, length = int(shape[0]), int(shape[1])
    keep = torch.ones(n, length, dtype=torch.bool)
    if attention_mask is not None:
        keep &= _bool_mask("attention_mask", attention_mask, (n, length), where).cpu()
    if special_mask is not None:
        keep &= ~_bool_mask("special_mask", special_mask, (n, length), where).cpu()
    if special_ids is not None:
        if input_ids is None:
            raise InvalidParameterError(
                f"The 'special_ids' parameter of {where} needs 'input_ids' [n, L] to find the special tokens. "
                f"Pass the token ids, or a 'special_mask' instead."
            )
        ids = torch.as_tensor(input_ids).cpu()
        if tuple(ids.shape) != (n, length) or ids.is_floating_point():
            raise InvalidParameterError(
                f"The 'input_ids' parameter of {where} must be integer token ids of shape {(n, length)}. "
                f"Got shape {tuple(ids.shape)} and dtype {ids.dtype} instead."
            )
        special = torch.tensor(sorted({int(i) for i in special_ids}), dtype=ids.dtype)
        keep &= ~torch.isin(ids, special)
    if drop_first and length:
        keep[:, 0] = False
    return keep


def pool_tokens(x: Any, keep: Any, pool: str = "mean", *, name: str = "x", where: str = "pool_tokens") -> Tensor:
    """Token features x [n, L, H] -> CKA rows: [n, H] (pool="mean", mean over each text's kept tokens)
    or [number kept, H] (pool="per_token", text by text, in token order). float64."""
    if pool not in POOLS:
        raise InvalidParameterError(f"The 'pool' parameter of {where} must be one of {POOLS}. Got {pool!r} instead.")
    feats = check_array(name, x, where=where, min_dim=3, dims=3)  # [n, L, H]
    k = _bool_mask("keep", keep, (feats.shape[0], feats.shape[1]), where).to(feats.device)
    if pool == "per_token":
        if not bool(k.any()):
            raise InvalidParameterError(
                f"No token of {name!r} is kept in {where}: padding, the first token and special tokens are all "
                f"dropped. Keep the first token or the special tokens, or give longer texts."
            )
        return feats[k]  # [kept, H]
    counts = k.sum(1, keepdim=True)  # [n, 1]
    if bool((counts == 0).any()):
        bad = int((counts == 0).sum())
        raise InvalidParameterError(
            f"{bad} text(s) of {name!r} keep no token in {where} (padding, the first token and special tokens "
            f"dropped), so they have no mean. Keep the first token or the special tokens, or give longer texts."
        )
    return (feats * k[..., None]).sum(1) / counts  # [n, H]


# --------------------------------------------------------------------------- dominance
@dataclass(frozen=True)
class Dominance:
    """How much of a layer's centred squared norm its top-k dimensions hold."""

    share: float  # Σ of the k largest per-dimension Σ_i (x_ij − x̄_j)², over the total; 0 for a constant layer
    dims: tuple[int, ...]  # those k dimensions (flattened feature indices), largest first
    dominated: bool  # share > threshold (and the layer has at least 4·k dimensions)
    top_k: int = DOMINANCE_TOP_K
    threshold: float = DOMINANCE_THRESHOLD


def dominance_from_variance(
    variance: Tensor, *, top_k: int = DOMINANCE_TOP_K, threshold: float = DOMINANCE_THRESHOLD
) -> Dominance:
    """Dominance from per-dimension centred sums of squares [d] (any positive scale)."""
    where = "dominance"
    k = check_int_range("top_k", top_k, 1, 1 << 30, where=where)
    t = check_range("threshold", threshold, 0.0, 1.0, where=where)
    v = variance.double().clamp_min(0).flatten()  # [d]
    total = float(v.sum())
    top = torch.topk(v, min(k, v.numel()))
    share = float(top.values.sum()) / total if total > 0 else 0.0
    flagged = share > t and v.numel() >= _MIN_DIMS_PER_K * k
    return Dominance(share, tuple(int(i) for i in top.indices), flagged, k, t)


def dominance(x: Any, *, top_k: int = DOMINANCE_TOP_K, threshold: float = DOMINANCE_THRESHOLD) -> Dominance:
    """Share of the centred squared norm of rows x [m, d] (flattened per row) held by its top-k dimensions."""
    feats = check_array("x", x, where="dominance", min_dim=1)
    feats = feats.reshape(feats.shape[0], -1)  # [m, d]
    centred = feats - feats.mean(0)
    return dominance_from_variance((centred * centred).sum(0), top_k=top_k, threshold=threshold)


@dataclass(frozen=True)
class Moments:
    """Row count, per-dimension mean [d] and centred sum of squares [d] of a stream of rows."""

    count: int
    mean: Tensor  # [d] float64
    m2: Tensor  # [d] float64, Σ_i (x_ij − mean_j)²


def moments(x: Tensor) -> Moments:
    """Moments of rows x [m, d] (float64)."""
    x = x.double().reshape(x.shape[0], -1)
    mean = x.mean(0)
    return Moments(x.shape[0], mean, ((x - mean) ** 2).sum(0))


def merge_moments(a: Moments | None, b: Moments) -> Moments:
    """Moments of two streams together (Chan, Golub & LeVeque's pairwise update)."""
    if a is None:
        return b
    n = a.count + b.count
    delta = b.mean - a.mean
    return Moments(n, a.mean + delta * (b.count / n), a.m2 + b.m2 + delta**2 * (a.count * b.count / n))
