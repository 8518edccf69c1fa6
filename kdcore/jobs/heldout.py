"""Held-out exact match of causal-LM runs (methods/15 §15.6): the quality curve of the Distill page
and the metric of the worked example (`python -m kdcore compare ... --metric heldout_em`).

    ps = heldout_prompts(dataset, n=64)     # PromptSet or None (a plain corpus without prompt records)
    em = heldout_exact_match(adapter, ps)   # % of prompts whose greedy completion equals the reference

The prompts are never trained on nor used to pick an epoch: the *test* split of a prompt/completion
dataset, or tinylang's copy task on its test split for the tinylang corpus. Decoding is greedy (one
beam), stops at the stop token and may run to the longest reference's length (capped by the context).
A completion matches when its token ids equal the reference's, stop token included: for token data
without text this is §15.6's exact match before normalisation (ids, not decoded strings).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from kdcore.data.base import Dataset
from kdcore.data.prompts import PromptSet
from kdcore.generation import greedy_completions
from kdcore.jobs.config import HELDOUT_PROMPTS  # prompts per evaluation (the first of the test split)

_SCORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> {(weights versions, prompts): EM}


def exact_match_ids(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]]) -> float:
    """100 × the share of predictions whose ids equal their reference's."""
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"exact_match_ids needs one reference per prediction and at least one. Got {len(predictions)} "
            f"predictions and {len(references)} references."
        )
    hits = sum(list(p) == list(r) for p, r in zip(predictions, references))
    return 100.0 * hits / len(references)


def heldout_prompts(dataset: Dataset | None, n: int = HELDOUT_PROMPTS) -> PromptSet | None:
    """The first n test prompts with references (see the module doc), None when the data have none or
    n is 0 (JobConfig.heldout_prompts = 0: no greedy decoding at evaluations)."""
    from kdcore.data.prompts import split_prompts, tinylang_copy_prompts
    from kdcore.jobs.sequence_data import is_prompt_data

    if dataset is None or dataset.task != "causal_lm" or n == 0:
        return None
    if dataset.name == "tinylang":
        return tinylang_copy_prompts("test", n)
    if not is_prompt_data(dataset):
        return None
    info = dataset.load_report or {}
    prompts, completions = split_prompts(dataset.split("test").subset(n))
    return PromptSet(prompts, completions, info.get("eos_id"), int(info.get("pad_id") or 0), f"{dataset.name} (test)")


def heldout_exact_match(model: Any, ps: PromptSet, context: int | None = None) -> float:
    """Greedy exact match (%) of `model` (a ModelAdapter or nn.Module) on the prompt set's references."""
    refs = ps.completions or []
    n = max(len(c) for c in refs)
    if context is not None:
        n = max(1, min(n, context - max(len(p) for p in ps.prompts)))
    preds = greedy_completions(model, ps.prompts, eos_id=ps.eos_id, pad_id=ps.pad_id, max_new_tokens=n)
    return exact_match_ids(preds, refs)


def fixed_model_exact_match(model: Any, ps: PromptSet, context: int | None = None) -> float:
    """`heldout_exact_match` remembered per model, its weights' versions and the prompts: a teacher
    shared by many runs is scored once (any in-place change of its weights scores it again)."""
    module = getattr(model, "model", model)
    key = (tuple(p._version for p in module.parameters()), hash(tuple(map(tuple, ps.prompts))), context)
    seen = _SCORES.setdefault(module, {})
    if key not in seen:
        seen[key] = heldout_exact_match(model, ps, context)
    return seen[key]
