"""Text for a Hugging Face pair, tokenised by the pair's own tokenizer (loaded from the model directory, offline).

Sources: a plain-text file (documents are paragraphs, separated by blank lines), JSONL (one JSON object
per line, its `text_field` string) or CSV (the `text_field` column). Each document is encoded with the
tokenizer's special tokens (e.g. a leading BOS) and, when the tokenizer has an EOS token, ends with it.

Rows of a context length L:
- mode="pack": the documents' tokens are concatenated and cut into consecutive chunks of L + 1;
  inputs = a chunk's first L tokens, targets = its last L (the next token at every position);
  a short last chunk (>= 2 tokens) is padded;
- mode="truncate": one row per document, cut to L + 1 tokens and padded.

targets[n, i] is the token after inputs[n, i], or -100 where nothing is predicted: padding, the last
token of a truncated row, and the first token of every document (nothing before it in the document
predicts it). extras["attention_mask"] [N, L] is 1 on real tokens, 0 on padding. Splits are a seeded
permutation of the rows. The Dataset's vocab_size is the model's (config.json), not the tokenizer's
length, so it matches the logits' width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from kdcore.data._hf_documents import check_format, read_documents
from kdcore.data._hf_rows import assign_rows, masked_dataset, open_model
from kdcore.data._user_common import DEFAULT_MAX_BYTES, check_split_options
from kdcore.data.base import IGNORE_INDEX, SPLITS, Dataset
from kdcore.data.hf_tokenizer import HFTextTokenizer
from kdcore.validation import InvalidParameterError

_WHERE = "load_hf_text"
MODES = ("pack", "truncate")


def load_hf_text(
    source: Any,
    model_dir: str | Path,
    *,
    student_dir: str | Path | None = None,
    format: Literal["auto", "text", "jsonl", "csv"] = "auto",
    text_field: str = "text",
    context_length: int = 128,
    mode: Literal["pack", "truncate"] = "pack",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> Dataset:
    """A causal-LM Dataset from text, JSONL or CSV, tokenised by the tokenizer saved in model_dir.

    source:         a file path, its bytes, or a binary file object
    model_dir:      the (teacher's) Hugging Face directory, with its tokenizer files, or its .gguf file
                    (config and tokenizer from the file's metadata; needs the `gguf` package)
    student_dir:    the student's directory (or .gguf file): its tokenizer must agree with the teacher's (else refused)
    format:         "auto" (by file extension: .jsonl, .csv, else text), "text", "jsonl" or "csv"
    text_field:     the JSONL key or CSV column holding the text
    context_length: L, at most the model's max_position_embeddings
    mode:           "pack" (concatenate, cut into chunks) or "truncate" (one row per document)

    Splits: inputs [N, L] long, targets [N, L] long (-100: not counted), extras["attention_mask"] [N, L].
    """
    vf, tf, seed, max_bytes = _check_options(mode, format, text_field, val_fraction, test_fraction, seed, max_bytes)
    model_path, config, L, hf_tok = open_model(
        model_dir, student_dir, length_name="context_length", length=context_length, where=_WHERE, gguf=True
    )
    vocab_size = _check_vocab(config, len(hf_tok), model_path)
    docs, file_name = read_documents(source, format=format, text_field=text_field, max_bytes=max_bytes, where=_WHERE)

    tok = HFTextTokenizer(hf_tok)
    encoded, rows = _rows(hf_tok, docs, mode, L=L, pad_id=tok.pad_id)  # rows: inputs, targets, mask [N, L]
    owner = assign_rows(len(rows[0]), vf, tf, seed, where=_WHERE)  # [N] split names
    shown = name or file_name or "text"
    description = (
        f"{len(docs)} documents from {shown!r}, tokenised by the tokenizer of "
        f"{model_path.name!r}, {mode}ed into rows of {L} tokens."
    )
    ds = masked_dataset(shown, description, rows, owner, task="causal_lm", tok=tok, vocab_size=vocab_size)
    ds.load_report = _report(encoded, *rows, owner, mode=mode, L=L, vocab_size=vocab_size, tokenizer_size=len(hf_tok))
    return ds


def _rows(
    hf_tok: Any, docs: list[str], mode: str, *, L: int, pad_id: int
) -> tuple[list[list[int]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The documents' token ids (one list each) and their rows: inputs, targets, attention mask [N, L]."""
    encoded = _encode(hf_tok, docs)
    rows = _pack(encoded, L) if mode == "pack" else _truncate(encoded, L)  # ids [N, L+1], starts, lengths
    return encoded, _rows_to_tensors(*rows, L=L, pad_id=pad_id)


def _check_options(
    mode: Any, format: Any, text_field: Any, val_fraction: Any, test_fraction: Any, seed: Any, max_bytes: Any
) -> tuple[float, float, int, int]:
    """The checked (val_fraction, test_fraction, seed, max_bytes); refuses a bad mode, format or text_field."""
    if mode not in MODES:
        raise InvalidParameterError(
            f"The 'mode' parameter of {_WHERE} must be one of {list(MODES)}. Got {mode!r} instead."
        )
    check_format(format, text_field, where=_WHERE)
    return check_split_options(val_fraction, test_fraction, seed, max_bytes, where=_WHERE)


def _check_vocab(config: dict[str, Any], tokenizer_size: int, model_path: Path) -> int:
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise InvalidParameterError(
            f"The config.json of {str(model_path)!r} must give vocab_size (a positive integer). Got {vocab!r} instead."
        )
    if tokenizer_size > vocab:
        raise InvalidParameterError(
            f"The tokenizer in {str(model_path)!r} has {tokenizer_size} tokens but the model's "
            f"vocab_size is {vocab}: some token ids would have no embedding. Save the "
            f"tokenizer the model was trained with next to it."
        )
    return vocab


def _encode(hf_tok: Any, docs: list[str]) -> list[list[int]]:
    """Token ids per document, with the tokenizer's special tokens and a closing EOS when it has one."""
    eos = hf_tok.eos_token_id
    out = []
    for ids in hf_tok(docs, add_special_tokens=True)["input_ids"]:
        ids = list(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        out.append(ids)
    return out


def _pack(encoded: list[list[int]], L: int) -> tuple[list[list[int]], list[list[bool]]]:
    """Concatenated documents cut into chunks of L + 1 (a last chunk kept if it has >= 2 tokens);
    with, per token, whether it starts a document."""
    stream = [t for ids in encoded for t in ids]
    starts = [i == 0 for ids in encoded for i in range(len(ids))]
    chunk = L + 1
    cuts = [(a, min(a + chunk, len(stream))) for a in range(0, len(stream), chunk)]
    cuts = [(a, b) for a, b in cuts if b - a >= 2]
    return [stream[a:b] for a, b in cuts], [starts[a:b] for a, b in cuts]


def _truncate(encoded: list[list[int]], L: int) -> tuple[list[list[int]], list[list[bool]]]:
    """One row per document of >= 2 tokens, cut to L + 1 tokens; the first token starts the document."""
    rows = [ids[: L + 1] for ids in encoded if len(ids) >= 2]
    return rows, [[i == 0 for i in range(len(r))] for r in rows]


def _rows_to_tensors(
    rows: list[list[int]], starts: list[list[bool]], *, L: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of up to L + 1 ids -> inputs [N, L] (pad_id after the row), targets [N, L] (-100 on padding and
    where the next token starts a document), attention mask [N, L] (1 on real input tokens)."""
    if not rows:
        raise InvalidParameterError(
            f"The text given to {_WHERE} has no document of two or more tokens, so "
            f"nothing can be predicted. Give more text."
        )
    inputs = np.full((len(rows), L), pad_id, dtype=np.int64)
    targets = np.full((len(rows), L), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(rows), L), dtype=np.int64)
    for n, (ids, st) in enumerate(zip(rows, starts)):
        m = len(ids) - 1  # predictions in this row
        inputs[n, :m], mask[n, :m] = ids[:-1], 1
        targets[n, :m] = np.where(np.array(st[1:]), IGNORE_INDEX, np.array(ids[1:]))
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask)


def _report(
    encoded: list[list[int]],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    owner: np.ndarray,
    *,
    mode: str,
    L: int,
    vocab_size: int,
    tokenizer_size: int,
) -> dict[str, Any]:
    """Counts: documents, tokens, rows, counted targets and padding per split."""
    per = {s: torch.from_numpy(owner == s) for s in SPLITS}
    return {
        "documents": len(encoded),
        "tokens": sum(len(ids) for ids in encoded),
        "mode": mode,
        "context_length": L,
        "vocab_size": vocab_size,
        "tokenizer_size": tokenizer_size,
        "rows": {s: int(per[s].sum()) for s in SPLITS},
        "target_tokens": {s: int((targets[per[s]] != IGNORE_INDEX).sum()) for s in SPLITS},
        "padding_tokens": {s: int((mask[per[s]] == 0).sum()) for s in SPLITS},
        "truncated_documents": sum(len(ids) > L + 1 for ids in encoded) if mode == "truncate" else 0,
    }
