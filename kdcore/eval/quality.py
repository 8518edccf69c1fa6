"""Generation quality (spec §15.6): exact match of greedy completions, token-weighted perplexity,
and paired bootstrap intervals of student/teacher ratios.

    em = exact_match(predictions, references)                 # mean × 100, after normalize_answer
    nll, tokens = sequence_nll(model, split)                  # per sequence, completion positions only
    ppl = perplexity_from(nll, tokens)                        # exp(Σ NLL / Σ tokens), not a mean of PPLs
    lo, hi = paired_bootstrap(s_scores, t_scores, ratio_of_means)
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

_PUNCT = set(string.punctuation)  # ASCII punctuation


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, collapse whitespace (MiniLLM/DistiLLM `normalize_answer`)."""
    return " ".join("".join(ch for ch in text.lower() if ch not in _PUNCT).split())


def exact_match_scores(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> np.ndarray:
    """Per item 1.0 when the normalised prediction equals any normalised acceptable reference, else 0.0."""
    if len(predictions) == 0 or len(predictions) != len(references):
        raise ValueError(
            f"exact_match needs one reference (or list of acceptable references) per prediction, and at least one. "
            f"Got {len(predictions)} predictions and {len(references)} references."
        )
    out = []
    for pred, ref in zip(predictions, references):
        refs = [ref] if isinstance(ref, str) else list(ref)
        out.append(float(any(normalize_answer(pred) == normalize_answer(r) for r in refs)))
    return np.array(out)


def exact_match(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, normalize: str = "lower_punct_ws"
) -> float:
    """EM = 100 × the mean of `exact_match_scores` (max over acceptable references)."""
    if normalize != "lower_punct_ws":
        raise ValueError(f"The 'normalize' parameter of exact_match must be 'lower_punct_ws'. Got {normalize!r}.")
    return float(exact_match_scores(predictions, references).mean() * 100.0)


def sequence_nll(
    model: Any, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(Σ NLL [N], kept tokens [N]) per sequence, teacher-forced: inputs [N, L] right-padded rows,
    targets [N, L] the next token on completion positions, −100 elsewhere (kdcore.data.prompts.sft_split)."""
    from kdcore.adapters.base import eval_mode

    module = getattr(model, "model", model)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    nll, count = [], []
    with eval_mode(module, no_grad=True):
        for i in range(0, inputs.shape[0], batch_size):
            x, y = inputs[i : i + batch_size].to(device), targets[i : i + batch_size].to(device)
            out = module(x)
            logits = (out if isinstance(out, torch.Tensor) else out.logits).double()  # [B, L, V]
            logp = logits.log_softmax(-1).gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, L]
            kept = y != -100
            nll.append((-(logp * kept)).sum(1).cpu().numpy())
            count.append(kept.sum(1).cpu().numpy())
    return np.concatenate(nll), np.concatenate(count).astype(np.float64)


def perplexity_from(nll: np.ndarray, tokens: np.ndarray) -> float:
    """Token-weighted perplexity exp(Σ NLL / Σ tokens) over the whole set."""
    total = float(np.sum(tokens))
    if total <= 0:
        raise ValueError("perplexity needs at least one completion token. Got none (every target is −100).")
    return math.exp(float(np.sum(nll)) / total)


def perplexity(
    model: Any, inputs: torch.Tensor, targets: torch.Tensor, *, unit: str = "token", n_bytes: np.ndarray | None = None
) -> float:
    """Token-weighted perplexity ("token"), or bits per UTF-8 byte ("byte": Σ NLL / (ln 2 · Σ bytes),
    n_bytes [N] the completions' byte counts) — the unit to compare models with different tokenizers."""
    nll, tokens = sequence_nll(model, inputs, targets)
    if unit == "token":
        return perplexity_from(nll, tokens)
    if unit == "byte" and n_bytes is not None:
        return float(np.sum(nll) / (math.log(2) * float(np.sum(n_bytes))))
    raise ValueError(f"The 'unit' parameter of perplexity must be 'token', or 'byte' with n_bytes. Got {unit!r}.")


def ratio_of_means(s: np.ndarray, t: np.ndarray) -> float:
    """100 · mean(s) / mean(t) (X of the scorecard)."""
    return 100.0 * float(np.mean(s)) / float(np.mean(t)) if np.mean(t) != 0 else math.nan


def paired_bootstrap(
    s: np.ndarray,
    t: np.ndarray,
    stat: Callable[[np.ndarray, np.ndarray], float],
    *,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of stat(s[idx], t[idx]) over n resamples idx of the items, drawn jointly
    for both models (numpy Generator(seed)); resamples where stat is not finite are left out."""
    s, t = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 1 or s.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length score vectors. Got shapes {s.shape} and {t.shape}.")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, s.size, size=(n, s.size))
    vals = np.array([stat(s[i], t[i]) for i in idx])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))
