"""The data of sequence-level and on-policy runs (methods/15): prompt/completion rows instead of the pair's corpus.

    sequence_data(config, pair, dataset)   # in prepare_run: the dataset the run trains on
    onpolicy_prompts(config)               # "auto" | "records" | "window" for gkd/minillm/distillm, else None

seqkd/hybrid always train on prompt/completion records. The on-policy methods take their prompts as
their `prompts` parameter says: "records" = the records of a prompt/completion dataset (a JSONL/CSV
file with prompt and completion fields, or tinylang's built-in copy task for the tinylang pair),
with the masks of §15.0; "window" = the first `prompt_tokens` tokens of each training sequence of a
plain text corpus (the data completion is the `max_new_tokens` tokens after them); "auto" (default)
= records when the data is a prompt/completion dataset (a file with both fields), windows otherwise
(tinylang's corpus keeps its windows unless `prompts=records`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from kdcore.methods import canonical_name
from kdcore.methods.onpolicy import ONPOLICY_METHODS
from kdcore.methods.sequence import SEQUENCE_METHODS

if TYPE_CHECKING:
    from kdcore.data.base import Dataset
    from kdcore.jobs.config import JobConfig
    from kdcore.pairs import Pair


def is_sequence_objective(objective: Any) -> bool:
    return isinstance(objective, str) and canonical_name(objective) in SEQUENCE_METHODS


def onpolicy_prompts(config: JobConfig) -> str | None:
    """The on-policy objective's `prompts` setting ("auto" when not given), None for other objectives."""
    name = canonical_name(config.objective) if isinstance(config.objective, str) else None
    if name not in ONPOLICY_METHODS:
        return None
    return str((config.params or {}).get("prompts", "auto"))


def is_prompt_data(dataset: Dataset) -> bool:
    """True for a prompt/completion dataset (kdcore.data.prompts.prompt_dataset)."""
    return bool(dataset.load_report) and "eos_id" in (dataset.load_report or {})


@functools.cache
def _tinylang_copy() -> Dataset:
    from kdcore.data.prompts import tinylang_copy_dataset

    return tinylang_copy_dataset()


def sequence_data(config: JobConfig, pair: Pair, dataset: Dataset) -> Dataset:
    """The dataset a run trains on: prompt/completion rows for seqkd/hybrid and for on-policy runs with
    prompts=records; unchanged otherwise (on-policy 'auto' keeps what the data is: records or a corpus)."""
    records = onpolicy_prompts(config) == "records"
    if not (is_sequence_objective(config.objective) or records):
        return dataset
    if is_prompt_data(dataset):
        return dataset
    if dataset.name == "tinylang":
        return _tinylang_copy()
    what = "params.prompts='records'" if records else f"the objective {config.objective!r}"
    raise ValueError(
        f"{what} needs prompt/completion data, and the pair {pair.name!r} has {dataset.name!r}. Give a JSONL or "
        f"CSV file with 'prompt' and 'completion' fields as the run's data (data=...), or use the tinylang pair "
        f"(its copy task)" + (", or prompts='window' (prompts cut from the corpus)." if records else ".")
    )
