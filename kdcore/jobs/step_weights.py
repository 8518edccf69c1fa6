"""The weights of a step's micro-batches (grad_accum) and data-parallel slices: each part's share of
the step's UNITS, the things the objective's loss averages over.

    unit = objective_unit(task, terms, ce_weight)          # "samples" | "tokens" | "positions"
    weights = unit_weights(idx, parts, targets, mask, unit)  # one float per part of idx

With loss_k the part's own mean over its units, Σ_k weight_k · loss_k is the whole batch's mean, so
k micro-batches (and N ranks, whose gradients are summed) give exactly the one-process, one-pass
gradient and logged loss components. The denominator is counted over the WHOLE global batch ``idx``
from the training targets and attention mask every rank holds, so no communication is needed.

Units, per objective of the method table (kdcore/methods), from how each loss reduces:

- "samples" (a part's rows / the batch's rows): every task but ``causal_lm``; ``hybrid`` with its
  default reduction "sequence" (its loss is (1/B) Σ_i over sequences, methods/15 §15.2).
- "tokens" (predicted positions: target ≠ -100 and, with an attention mask, mask ≠ 0; the losses
  themselves count targets ≠ -100, and the text loaders put -100 on every padded position, so the two
  agree): ``token`` (divergence_loss's pooled mean over targets ≠ -100, the chunked path too), the
  causal-LM CE (``ce``, and the CE added by ce_weight: cross_entropy's ignore_index mean), ``seqkd``
  (nll and word_ce pooled over the kept shifted labels, which are the targets ≠ -100 of sft rows,
  whose last column is always -100), ``hybrid`` with reduction "token" (its token term pooled over the
  data rows' kept positions; its sentence term on ŷ is pooled over ŷ's rows, so it is exact only with
  token_targets="teacher", where both are the same rows).
- "positions" (attention-mask positions, all L without a mask): ``attn_kl`` (attention_kl_loss's mean
  over batch, heads and the query rows the attention mask keeps).

Mixed objectives (terms of different units, e.g. ``attn_kl`` plus the CE ``attn_kl`` adds by default,
or ``hybrid`` with ce_weight > 0) take "tokens" when any part of the objective is a token mean (the
CE and the token divergences, the terms that carry the most weight), else the first term's unit: exact
for those parts, while the others' parts are weighted by the token counts instead of their own units
(each part still the right loss, only its share approximate, as every objective was before).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.methods import IGNORE_INDEX, get_method

UNITS = ("samples", "tokens", "positions")


def term_unit(name: str, params: dict) -> str:
    """The unit a causal-LM term's loss averages over (see the module's docstring)."""
    canon = get_method(name).name
    if canon == "hybrid":
        return "tokens" if params.get("reduction") == "token" else "samples"
    if canon == "attn_kl":
        return "positions"
    return "tokens"  # token, ce, seqkd (gkd, minillm, distillm run in the on-policy job, without micro-batches)


def objective_unit(task: str, terms: list, ce_weight: float) -> str:
    """The unit a step of `terms` (+ ce_weight · CE) averages over: "samples" outside causal LMs."""
    if task != "causal_lm":
        return "samples"
    units = [term_unit(t.name, t.params) for t in terms] + (["tokens"] if ce_weight > 0 else [])
    if "tokens" in units or not units:
        return "tokens"
    return units[0]


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"The unit of a step's weights must be one of {UNITS}. Got {unit!r} instead.")


def unit_counts(targets: Tensor, mask: Tensor | None, unit: str) -> Tensor:
    """Units per row, int64 [N], of rows with targets [N, ...] ([N, L] for "tokens"/"positions") and
    an attention mask [N, L] (or None)."""
    _check_unit(unit)
    n = targets.shape[0]
    if unit == "samples":
        return targets.new_ones(n, dtype=torch.int64)
    if targets.dim() != 2:
        raise ValueError(
            f"Weighting by {unit} needs token targets [N, L] (a causal LM's next-token ids, -100 where none). "
            f"Got targets of shape {tuple(targets.shape)}: use the unit 'samples' for this task."
        )
    if mask is not None and tuple(mask.shape) != tuple(targets.shape):
        raise ValueError(
            f"The attention mask must be shaped like the targets {tuple(targets.shape)} (one entry per "
            f"position). Got {tuple(mask.shape)} instead."
        )
    keep = targets.new_ones(targets.shape, dtype=torch.bool) if unit == "positions" else targets != IGNORE_INDEX
    if mask is not None:
        keep = keep & (mask != 0)
    return keep.sum(dim=1)


def unit_weights(idx: Tensor, parts: list[Tensor], targets: Tensor, mask: Tensor | None, unit: str) -> list[float]:
    """Each part's share of the step's units: units(targets[part]) / units(targets[idx]).

    idx: [B] the step's global batch (row indices of targets); parts: index tensors of rows of idx
    (micro-batches, a rank's slice's micro-batches); targets [N, ...], mask [N, L] or None: the
    training set's. The parts of a split of idx get weights summing to 1. Every training step calls
    this: samples are counted from the index lengths (no tensor work), token counts are read back in one
    transfer (one device sync per step on a GPU, not one per part)."""
    _check_unit(unit)
    if unit == "samples":
        counts = [int(p.shape[0]) for p in (idx, *parts)]
    else:
        sums = [unit_counts(targets[p], None if mask is None else mask[p], unit).sum() for p in (idx, *parts)]
        counts = [int(c) for c in torch.stack(sums).tolist()]
    total = counts[0]
    if total == 0:
        raise ValueError(
            f"The step's batch of {idx.shape[0]} rows has no {unit} to average over (every target is -100 or "
            f"masked): there is nothing to learn from. Check the data's targets and attention mask."
        )
    return [c / total for c in counts[1:]]
