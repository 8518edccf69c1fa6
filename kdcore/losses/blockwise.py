"""Block-wise logit distillation with stepping-stone networks (methods/14 §14.3).

Teacher f_T = h_T ∘ t_n ∘ … ∘ t_1, student f_S = h_S ∘ s_n ∘ … ∘ s_1, φ_i a connector from the
student's block-i output to the teacher's block-i output:

    N_i = h_T ∘ t_n ∘ … ∘ t_{i+1} ∘ φ_i ∘ s_i ∘ … ∘ s_1  (1 ≤ i < n),   N_n = f_S
    L   = Σ_{i=1}^{n} 2^{−(n−i)} · L_base(z_{N_i}, z_T, y)

L_base is §1 KD ((1 − λ)·CE + λ·T²·KL) or, with base="dkd", (1 − λ)·CE + λ·DKD (§3, α = 1, β = 8).
Source: Yu et al., "Decoupling Dark Knowledge via Block-wise Logit Distillation for Feature-level
Alignment", IEEE TAI 2024, arXiv 2411.01547.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._inputs import _check_class_labels, _check_pair
from kdcore.losses.decoupled import dkd_loss
from kdcore.losses.kd import kd_components
from kdcore.validation import InvalidParameterError, check_positive, check_range

BASES = ("kd", "dkd")
Block = Callable[[Tensor], Tensor]


def stone_weights(n: int) -> list[float]:
    """The weights 2^{−(n−i)} of stones i = 1..n (the student, i = n, weighs 1); they sum to 2 − 2^{1−n}."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError(f"The number of blocks n must be an integer ≥ 1. Got {n!r} instead.")
    return [2.0 ** -(n - i) for i in range(1, n + 1)]


def _base_loss(z: Tensor, t: Tensor, y: Tensor | None, T: float, lam: float, ce: bool, base: str) -> Tensor:
    """One stone's L_base (batch mean): (1 − λ)·CE (when `ce` and labels) + λ·(T²·KL | DKD)."""
    if base == "dkd":
        if y is None:
            raise InvalidParameterError("base='dkd' needs labels (DKD splits the target class off); pass labels.")
        soft = dkd_loss(z, t, y, temperature=T)
    else:
        soft = T * T * kd_components(z, t, None, temperature=T)["kl"].mean()
    if y is None:
        return soft
    if not ce:
        return lam * soft
    return (1.0 - lam) * F.cross_entropy(z.float() if z.dtype != torch.float64 else z, y) + lam * soft


@dataclass(frozen=True)
class BlockwiseOptions:
    """The options of the stones' base loss: the keywords of ``blockwise_logit_loss`` (§14.3's Signature)
    that it passes along to ``blockwise_components``. Checked where the work starts (``_check_options``)."""

    temperature: float = 4.0  # T > 0 of the base KD (or DKD)
    lam: float = 0.9  # λ ∈ [0, 1]: weight of the KD term, CE gets 1 − λ
    ce_in_stones: bool = True  # False: CE on the student only, the stones keep λ·T²·KL
    base: str = "kd"  # one of BASES: §1 KD or §3 DKD


def _check_options(options: BlockwiseOptions, where: str) -> tuple[float, float]:
    """(T, λ) of ``options``, validated with its ``base``."""
    T = check_positive("temperature", options.temperature, where=where)
    lam = check_range("lam", options.lam, 0.0, 1.0, where=where)
    if options.base not in BASES:
        raise InvalidParameterError(
            f"The 'base' parameter of {where} must be one of {BASES}. Got {options.base!r} instead."
        )
    return T, lam


def _as_options(options: dict[str, Any], where: str) -> BlockwiseOptions:
    """``BlockwiseOptions`` from the keyword arguments of a ``**options`` function; unknown names refused."""
    known = tuple(f.name for f in fields(BlockwiseOptions))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidParameterError(f"{where} got unknown parameter(s) {unknown}. Expected some of {known}.")
    return BlockwiseOptions(**options)


def blockwise_components(
    stone_logits: Sequence[Tensor], teacher_logits: Tensor, labels: Tensor | None = None, **options: Any
) -> tuple[Tensor, dict[str, Tensor]]:
    """(L, {"stone1": …, "stone{n}": …}) from the stones' logits z_{N_1..N_n} ([B, C] each, the last
    the student's). Each part is its stone's L_base before its weight; L = Σ parts_i / 2^{n−i}.
    ``**options``: the fields of ``BlockwiseOptions`` (temperature=4.0, lam=0.9, ce_in_stones=True,
    base="kd"); `ce_in_stones=False` keeps CE on the student only (stones keep λ·T²·KL)."""
    where = "blockwise_components"
    opts = _as_options(options, where)
    T, lam = _check_options(opts, where)
    if not isinstance(stone_logits, (list, tuple)) or not stone_logits:
        raise InvalidParameterError(
            f"The 'stone_logits' argument of {where} must be a non-empty list of [B, C] logits (N_1 … N_n, the "
            f"student last). Got {type(stone_logits).__name__}{'' if stone_logits else ' (empty)'}."
        )
    checked = [_check_pair(z, teacher_logits, where=where)[0] for z in stone_logits]
    t = teacher_logits.detach()
    y = None if labels is None else _check_class_labels(labels, checked[0], where=where)
    n = len(checked)
    parts = {
        f"stone{i}": _base_loss(z, t, y, T, lam, opts.ce_in_stones or i == n, opts.base)
        for i, z in enumerate(checked, start=1)
    }
    total = sum(w * parts[f"stone{i}"] for i, w in enumerate(stone_weights(n), start=1))
    return total, parts  # type: ignore[return-value]


def stepping_stone_logits(
    student_blocks: Sequence[Block],
    teacher_blocks: Sequence[Block],
    student_head: Block,
    teacher_head: Block,
    connectors: Sequence[Block],
    x: Tensor,
) -> tuple[list[Tensor], Tensor]:
    """([z_{N_1}, …, z_{N_n}], z_T): every stone's logits (the student's last) and the teacher's (no graph).
    Raises when the block counts differ, n < 1, connectors ≠ n − 1 or a connector's output shape is
    not the teacher block's."""
    where = "stepping_stone_logits"
    n = len(student_blocks)
    if n < 1 or len(teacher_blocks) != n:
        raise InvalidParameterError(
            f"{where} needs n ≥ 1 student blocks and as many teacher blocks. Got {n} student and "
            f"{len(teacher_blocks)} teacher blocks: split both models into the same number of stages."
        )
    if len(connectors) != n - 1:
        raise InvalidParameterError(
            f"{where} needs n − 1 = {n - 1} connectors (one per stepping-stone). Got {len(connectors)}."
        )
    with torch.no_grad():
        t_outs, h = [], x
        for block in teacher_blocks:
            h = block(h)
            t_outs.append(h)
        z_t = teacher_head(h)
    stones, h = [], x
    for i in range(n):
        h = student_blocks[i](h)
        if i == n - 1:
            stones.append(student_head(h))
            break
        g = connectors[i](h)
        if g.shape != t_outs[i].shape:
            raise InvalidParameterError(
                f"Connector {i + 1} of {where} gives shape {tuple(g.shape)} but teacher block {i + 1} gives "
                f"{tuple(t_outs[i].shape)}: the connector must map the student's block output to the teacher's."
            )
        for block in teacher_blocks[i + 1 :]:
            g = block(g)
        stones.append(teacher_head(g))
    return stones, z_t


def blockwise_logit_loss(
    student_blocks: Sequence[Block],
    teacher_blocks: Sequence[Block],
    student_head: Block,
    teacher_head: Block,
    connectors: Sequence[Block],
    x: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 4.0,
    lam: float = 0.9,
    ce_in_stones: bool = True,
    base: str = "kd",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Block-KD's loss L of §14.3 and the per-stone losses (for the view). The teacher's blocks and
    head must be frozen by the caller (eval mode, no optimizer) but stay differentiable: the loss of
    N_i trains s_1..s_i and φ_i through t_{i+1..n} and h_T. Class counts of the heads must agree."""
    options = BlockwiseOptions(temperature, lam, ce_in_stones, base)
    _check_options(options, "blockwise_logit_loss")  # before any block runs
    stones, z_t = stepping_stone_logits(student_blocks, teacher_blocks, student_head, teacher_head, connectors, x)
    return blockwise_components(stones, z_t, labels, **asdict(options))
