"""Sentences for a Hugging Face encoder or sequence-classifier pair, tokenised by the pair's own tokenizer.

Sources: plain text (one sentence per line, or per paragraph with unit="paragraph"), JSONL (one
object per line: its `text_field` string) or CSV (the `text_field` column). Each sentence is encoded
with the tokenizer's special tokens (e.g. [CLS] ... [SEP]), truncated to max_length and padded with
the pad token to max_length.

- With `label_field` (JSONL key or CSV column): a "classification" Dataset, targets [N] long class
  ids. Labels are integer class ids, or class names (mapped through the config's label2id when it
  names them all, else numbered in sorted order). The class count is the model's num_labels
  (config.json); labels outside it are refused, naming both counts.
- Without: an "encoder" Dataset (inputs only; targets [N] are zeros and are not used).

inputs [N, max_length] long, extras["attention_mask"] [N, max_length] (1 on real tokens, 0 on
padding). The pad id is the tokenizer's, and must be the model's pad_token_id (config.json): the
Hugging Face adapters rebuild the attention mask from it (ids != pad_token_id) whenever they are
given bare token ids, so the padding of these rows is masked in training, validation, CKA and
attention views. Splits are a seeded permutation of the sentences (val and test at least one each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from kdcore.data._hf_records import UNITS, Label, read_records
from kdcore.data._hf_rows import assign_rows, masked_dataset, open_model
from kdcore.data._user_common import DEFAULT_MAX_BYTES, check_split_options
from kdcore.data.base import SPLITS, Dataset, Task
from kdcore.data.hf_tokenizer import HFTextTokenizer
from kdcore.validation import InvalidParameterError

_WHERE = "load_hf_sentences"


def load_hf_sentences(
    source: Any,
    model_dir: str | Path,
    *,
    student_dir: str | Path | None = None,
    format: Literal["auto", "text", "jsonl", "csv"] = "auto",
    text_field: str = "text",
    label_field: str | None = None,
    unit: Literal["line", "paragraph"] = "line",
    max_length: int = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> Dataset:
    """An "encoder" (no labels) or "classification" (label_field given) Dataset of padded sentences.

    source:      a file path, its bytes, or a binary file object
    model_dir:   the (teacher's) Hugging Face directory, with its tokenizer files
    student_dir: the student's directory: its tokenizer must agree with the teacher's (else refused)
    label_field: the JSONL key or CSV column holding each sentence's class, or None (encoder task)
    unit:        plain text only: one sentence per "line" or per "paragraph" (blank-line separated)
    max_length:  tokens per row (truncated, then padded), at most the model's max_position_embeddings

    Splits: inputs [N, max_length] long, targets [N] long, extras["attention_mask"] [N, max_length].
    """
    vf, tf, seed, max_bytes = _check_options(unit, val_fraction, test_fraction, seed, max_bytes)
    model_path, config, L, hf_tok = open_model(
        model_dir, student_dir, length_name="max_length", length=max_length, where=_WHERE, gguf=False
    )
    tok = HFTextTokenizer(hf_tok)
    pad_id = _pad_id(hf_tok, config, model_path)
    texts, labels, file_name = _read(source, format, text_field, label_field, unit, max_bytes)
    inputs, mask, truncated = _encode(hf_tok, texts, L, pad_id)  # [N, L] each
    owner = assign_rows(len(texts), vf, tf, seed, where=_WHERE)  # [N] split names
    shown = name or file_name or "sentences"
    no_labels = torch.zeros(len(texts), dtype=torch.long), None  # targets [N], not used
    targets, class_names = no_labels if labels is None else _label_ids(labels, config, model_path)  # [N] class ids
    about = f"{len(texts)} sentences from {shown!r}, tokenised by the tokenizer of {model_path.name!r}, padded to {L} tokens"
    about += f", {len(class_names)} classes." if class_names else "."
    task: Task = "encoder" if class_names is None else "classification"
    ds = masked_dataset(shown, about, (inputs, targets, mask), owner, task=task, tok=tok, class_names=class_names)
    ds.load_report = _report(texts, mask, owner, truncated, L=L, pad_id=pad_id, labelled=labels is not None)
    return ds


def _read(
    source: Any, format: str, text_field: str, label_field: str | None, unit: str, max_bytes: int
) -> tuple[list[str], list[Label] | None, str | None]:
    """(sentences, labels or None, file name or None): kdcore.data._hf_records.read_records."""
    return read_records(
        source,
        format=format,
        text_field=text_field,
        label_field=label_field,
        unit=unit,
        max_bytes=max_bytes,
        where=_WHERE,
    )


def _check_options(unit: Any, val_fraction: Any, test_fraction: Any, seed: Any, max_bytes: Any) -> tuple:
    if unit not in UNITS:
        raise InvalidParameterError(
            f"The 'unit' parameter of {_WHERE} must be one of {list(UNITS)}. Got {unit!r} instead."
        )
    return check_split_options(val_fraction, test_fraction, seed, max_bytes, where=_WHERE)


def _pad_id(hf_tok: Any, config: dict[str, Any], model_path: Path) -> int:
    """The tokenizer's pad id, which must be the model's pad_token_id (the adapters mask by it)."""
    tok_pad: Any = hf_tok.pad_token_id
    model_pad: Any = config.get("pad_token_id")
    if tok_pad is None and model_pad is None:
        raise InvalidParameterError(
            f"Neither the tokenizer in {str(model_path)!r} nor its config.json names a pad token, so padded "
            f"sentences cannot be masked. Set tokenizer.pad_token and config.pad_token_id, and save both."
        )
    if tok_pad is not None and model_pad is not None and tok_pad != model_pad:
        raise InvalidParameterError(
            f"The tokenizer in {str(model_path)!r} pads with id {tok_pad} but config.json's pad_token_id is "
            f"{model_pad}: padding would not be masked. Make them agree (config.pad_token_id = {tok_pad})."
        )
    return int(tok_pad) if tok_pad is not None else int(model_pad)


def _encode(hf_tok: Any, texts: list[str], L: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(ids [N, L] padded with pad_id, attention mask [N, L], number of sentences truncated)."""
    encoded = hf_tok(texts, add_special_tokens=True)["input_ids"]
    inputs = np.full((len(texts), L), pad_id, dtype=np.int64)
    mask = np.zeros((len(texts), L), dtype=np.int64)
    for n, ids in enumerate(encoded):
        ids = list(ids)[:L]
        if pad_id in ids:
            raise InvalidParameterError(
                f"Sentence {n + 1} given to {_WHERE} ({texts[n][:60]!r}) encodes to the pad token (id {pad_id}), "
                f"which the models would mask out. Remove the literal pad token from the text."
            )
        inputs[n, : len(ids)], mask[n, : len(ids)] = ids, 1
    truncated = sum(len(ids) > L for ids in encoded)
    return torch.from_numpy(inputs), torch.from_numpy(mask), truncated


def _label_ids(labels: list[Label], config: dict[str, Any], model_path: Path) -> tuple[torch.Tensor, list[str]]:
    """Class ids [N] and the class names, checked against the model's num_labels (config.json)."""
    raw = config.get("id2label")
    id2label: dict = raw if isinstance(raw, dict) else {}
    n_model = _num_labels(config, id2label)
    model_names = [str(id2label.get(str(i), i)) for i in range(n_model)] if n_model else None
    label2id = {str(k): v for k, v in (config.get("label2id") or {}).items() if isinstance(v, int)}
    if all(isinstance(y, int) for y in labels):
        ids = [int(y) for y in labels]
        n_data, names, fits = max(ids) + 1, model_names, min(ids) >= 0 and (not n_model or max(ids) < n_model)
        what = f"class ids from {min(ids)} to {max(ids)}"
    elif all(str(y) in label2id for y in labels):
        ids = [label2id[str(y)] for y in labels]
        n_data, names, fits = max(ids) + 1, model_names, True
        what = "class names from the config's label2id"
    else:
        order = sorted({str(y) for y in labels})
        ids = [order.index(str(y)) for y in labels]
        n_data, names, fits = len(order), order, not n_model or len(order) == n_model
        what = f"{len(order)} class names ({', '.join(order[:5])}{' ...' if len(order) > 5 else ''})"
    if not fits:
        raise InvalidParameterError(
            f"The labels given to {_WHERE} hold {what}, but the model in {str(model_path)!r} has "
            f"num_labels={n_model} (config.json): {n_data} classes vs {n_model} outputs. Give labels the model "
            f"was trained on (ids 0..{(n_model or 1) - 1}), or a model with num_labels={n_data}."
        )
    count = n_model or n_data
    return torch.tensor(ids, dtype=torch.long), (names or [str(i) for i in range(count)])[:count]


def _num_labels(config: dict[str, Any], id2label: dict) -> int | None:
    """The model's class count: id2label's length, num_labels, or transformers' default of 2 for a
    sequence classifier whose config.json leaves them out; None for a model without a classifier head."""
    n = len(id2label) or config.get("num_labels")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    architectures = config.get("architectures") or []
    return 2 if any(str(a).endswith("ForSequenceClassification") for a in architectures) else None


def _report(
    texts: list[str], mask: torch.Tensor, owner: np.ndarray, truncated: int, *, L: int, pad_id: int, labelled: bool
) -> dict[str, Any]:
    """Counts: sentences, rows per split, real and padding tokens, truncated sentences."""
    return {
        "sentences": len(texts),
        "max_length": L,
        "pad_id": pad_id,
        "labelled": labelled,
        "rows": {s: int((owner == s).sum()) for s in SPLITS},
        "tokens": int(mask.sum()),
        "padding_tokens": int((mask == 0).sum()),
        "truncated_sentences": truncated,
    }
