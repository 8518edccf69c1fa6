"""Teacher assistants: TAKD's path of stages and DGKD's densely guided loss (methods/13 §13.2).

Mirzadeh et al. AAAI 2020, arXiv 1902.03393 (TAKD); Son et al. ICCV 2021, arXiv 2009.08825 (DGKD).
A TAKD stage is §1 `kd_loss` between consecutive models of the path; the chain itself is run by the
job runner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses._kl import _kl, _upcast
from kdcore.validation import InvalidParameterError, check_int_range, check_positive, check_range


def takd_path(sizes: Sequence[float]) -> list[tuple[int, int]]:
    """The stages of a TAKD chain over models of the given sizes, teacher first:
    ``[(0, 1), (1, 2), …]`` = (teacher index, student index) per stage, each stage teaching the next.

    `sizes` (parameter counts, widths or depths) must be at least 2 strictly decreasing positive
    numbers: a chain whose stages do not shrink is refused. methods/13 §13.2 (path "full").
    """
    where = "takd_path"
    values = _check_sizes(sizes, where)
    grows = [i for i in range(1, len(values)) if values[i] >= values[i - 1]]
    if grows:
        i = grows[0]
        raise InvalidParameterError(
            f"The 'sizes' argument of {where} must be strictly decreasing (teacher first, each "
            f"assistant smaller than the model before it). Got {list(sizes)!r}: size {values[i]!r} "
            f"at position {i} is not smaller than {values[i - 1]!r}. Order the models from "
            f"largest to smallest and drop repeated sizes."
        )
    return [(i, i + 1) for i in range(len(values) - 1)]


def _check_sizes(sizes: Any, where: str) -> list[float]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise InvalidParameterError(
            f"The 'sizes' argument of {where} must be a list of model sizes, teacher first. "
            f"Got {type(sizes).__name__} instead."
        )
    if len(sizes) < 2:
        raise InvalidParameterError(
            f"The 'sizes' argument of {where} must hold at least 2 sizes (a teacher and a "
            f"student). Got {list(sizes)!r}."
        )
    bad = [v for v in sizes if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0]
    if bad:
        raise InvalidParameterError(
            f"The 'sizes' argument of {where} must hold positive numbers. Got {bad[0]!r} in {list(sizes)!r}."
        )
    return [float(v) for v in sizes]


def dgkd_choose_dropped(
    rng: torch.Generator | np.random.Generator, n_guides: int, drop_num: int = 1
) -> tuple[int, ...]:
    """The guides DGKD drops this iteration: `drop_num` indices drawn uniformly without replacement
    from range(n_guides), sorted. drop_num ∈ [0, n_guides): at least one guide stays.
    `rng`: a torch.Generator or a numpy Generator (seed it). methods/13 §13.2."""
    where = "dgkd_choose_dropped"
    n = check_int_range("n_guides", n_guides, 1, 2**31 - 1, where=where)
    k = check_int_range("drop_num", drop_num, 0, n - 1, where=where)
    if isinstance(rng, torch.Generator):
        picked = torch.randperm(n, generator=rng)[:k].tolist()
    elif isinstance(rng, np.random.Generator):
        picked = rng.choice(n, size=k, replace=False).tolist()
    else:
        raise InvalidParameterError(
            f"The 'rng' argument of {where} must be a torch.Generator or a numpy.random.Generator. "
            f"Got {type(rng).__name__} instead. Pass torch.Generator().manual_seed(0)."
        )
    return tuple(sorted(int(i) for i in picked))


def dgkd_loss(
    student_logits: Tensor,
    guide_logits: list[Tensor],
    labels: Tensor | None,
    temperature: float = 5.0,
    lam: float = 1.0,
    dropped: Sequence[int] = (),
) -> Tensor:
    """DGKD: batch mean of (1 − λ)·CE(y, softmax(z_s)) + λ·T²·Σ_{g ∉ dropped} KL(softmax_T(z_g) ‖ softmax_T(z_s)).

    `guide_logits`: the teacher and every assistant larger than the student, each [B, C]; the kept
    KL terms are summed (not averaged), as the authors' code. Defaults T = 5, λ = 1 (no label term;
    `labels` may then be None). Each KL is batchmean (the authors' element mean is this ÷ C).
    methods/13 §13.2.
    """
    where = "dgkd_loss"
    T = check_positive("temperature", temperature, where=where)
    lam = check_range("lam", lam, 0.0, 1.0, where=where)
    guides = _check_guides(student_logits, guide_logits, where)
    kept = [g for i, g in enumerate(guides) if i not in _check_dropped(dropped, len(guides), where)]
    (s,) = _upcast(student_logits)
    log_q = torch.log_softmax(s / T, dim=-1)  # [B, C]
    kd = torch.stack([_kl(torch.log_softmax(_upcast(g)[0] / T, dim=-1), log_q).mean() for g in kept]).sum()
    if labels is None:
        if lam != 1.0:
            raise InvalidParameterError(
                f"{where} got labels=None with lam={lam}: the label term (1 − λ)·CE needs labels. "
                f"Pass the labels, or lam=1.0."
            )
        return T * T * kd
    y = _check_class_labels(labels, s, where=where)
    return (1.0 - lam) * F.cross_entropy(s, y) + lam * T * T * kd


def _check_guides(student_logits: Any, guide_logits: Any, where: str) -> list[Tensor]:
    if isinstance(guide_logits, Tensor) or not isinstance(guide_logits, (list, tuple)) or not guide_logits:
        raise InvalidParameterError(
            f"The 'guide_logits' argument of {where} must be a non-empty list of [B, C] logit "
            f"tensors (the teacher and the assistants). Got {type(guide_logits).__name__}"
            f"{' of length 0' if isinstance(guide_logits, (list, tuple)) else ''} instead."
        )
    return [_check_pair(student_logits, g, where=where)[1] for g in guide_logits]


def _check_dropped(dropped: Any, n: int, where: str) -> set[int]:
    items = list(dropped) if isinstance(dropped, (list, tuple, set, frozenset)) else None
    if items is None or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n for i in items):
        raise InvalidParameterError(
            f"The 'dropped' argument of {where} must be a tuple of guide indices in [0, {n - 1}]. "
            f"Got {dropped!r} instead."
        )
    if len(set(items)) != len(items) or len(items) >= n:
        raise InvalidParameterError(
            f"The 'dropped' argument of {where} must be a proper subset of the {n} guide(s), "
            f"without repeats (at least one guide stays). Got {dropped!r}. Use "
            f"dgkd_choose_dropped(rng, {n}, drop_num) with drop_num < {n}."
        )
    return set(items)
