"""The data of sequence-level runs (methods/15): prompt/completion rows instead of the pair's corpus."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from kdcore.methods import canonical_name
from kdcore.methods.sequence import SEQUENCE_METHODS

if TYPE_CHECKING:
    from kdcore.data.base import Dataset
    from kdcore.jobs.config import JobConfig
    from kdcore.pairs import Pair


def is_sequence_objective(objective: Any) -> bool:
    return isinstance(objective, str) and canonical_name(objective) in SEQUENCE_METHODS


@functools.cache
def _tinylang_copy() -> Dataset:
    from kdcore.data.prompts import tinylang_copy_dataset

    return tinylang_copy_dataset()


def sequence_data(config: JobConfig, pair: Pair, dataset: Dataset) -> Dataset:
    """The dataset a run trains on: unchanged for other objectives; prompt/completion rows for seqkd/hybrid."""
    if not is_sequence_objective(config.objective):
        return dataset
    if dataset.load_report and "eos_id" in dataset.load_report:
        return dataset
    if dataset.name == "tinylang":
        return _tinylang_copy()
    raise ValueError(
        f"The objective {config.objective!r} needs prompt/completion data, and the pair {pair.name!r} has "
        f"{dataset.name!r}. Give a JSONL or CSV file with 'prompt' and 'completion' fields as the run's data "
        f"(data=...), or use the tinylang pair (its copy task)."
    )
