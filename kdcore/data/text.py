"""The user's text for causal language models: a UTF-8 plain-text file.

The text is cut into pieces (characters or words, see tokenizers.py), then into consecutive blocks
of block_size + 1 pieces; a block gives inputs = its first block_size pieces and targets = its last
block_size (the next piece at every position). A short last block is padded: inputs with <pad>,
targets with -100 (nothing predicted).

Splits are disjoint parts of the text: val and test are each one contiguous run of blocks, placed
at seeded random positions; train is the rest. The tokenizer is built from the train blocks only,
so val/test pieces never seen in training become <unk>.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from kdcore.data._user_common import DEFAULT_MAX_BYTES, check_split_options, read_source
from kdcore.data.base import IGNORE_INDEX, SPLITS, Dataset, SplitData
from kdcore.data.tokenizers import CharTokenizer, WordTokenizer
from kdcore.validation import check_int_range

_WHERE = "load_text"
_TOKENIZERS = {"char": CharTokenizer, "word": WordTokenizer}


def load_text(
    path_or_bytes: Any,
    *,
    tokenizer: Literal["char", "word"] = "char",
    block_size: int = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_vocab: int = 20000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> Dataset:
    """A causal-LM Dataset from a plain-text file.

    path_or_bytes: a file path, the file's bytes, or a binary file object (an upload)
    tokenizer:     "char" (one token per character) or "word" (words, punctuation, whitespace runs)
    block_size:    tokens per training sequence (L)
    val_fraction, test_fraction: shares of the blocks held out, each one contiguous run placed by `seed`
    max_vocab:     word tokenizer only: keep the most frequent max_vocab tokens (specials included)
    max_bytes:     refuse files larger than this
    name:          the Dataset's name (default: the file name, or "text")

    Splits hold inputs [N, L] long token ids and targets [N, L] long next-token ids (-100: none).
    The Dataset's `tokenizer` encodes/decodes; its `load_report` dict gives token and block counts,
    the token spans of each split, and the share of <unk> in val/test.
    """
    L, vf, tf, seed, max_bytes = _check_args(tokenizer, block_size, val_fraction, test_fraction, seed, max_bytes)
    text, file_name = _read_text(path_or_bytes, max_bytes)

    pieces = _TOKENIZERS[tokenizer].split(text)  # the whole text as token strings
    chunk = L + 1
    n_blocks = len(pieces) // chunk + (1 if len(pieces) % chunk >= 2 else 0)  # a tail of >= 2 pieces predicts something
    owner = _assign_blocks(n_blocks, vf, tf, seed, n_pieces=len(pieces), block_size=L, tokenizer=tokenizer)  # [B]
    tok = _train_tokenizer(tokenizer, pieces, owner, chunk, max_vocab)
    ids = np.array(tok.encode_pieces(pieces), dtype=np.int64)  # [T]
    inputs, targets = _blocks(ids, n_blocks, L, tok.pad_id)  # [B, L], [B, L]

    shown = name or file_name or "text"
    about = (
        f"{len(pieces)} {tokenizer} tokens from {shown!r} in blocks of {L}; "
        f"vocabulary of {tok.vocab_size} from the train split."
    )
    ds = _dataset(shown, about, inputs, targets, owner, tok=tok)
    ds.load_report = _load_report(text, pieces, tokenizer, tok, owner, inputs, L=L, n_blocks=n_blocks)
    return ds


def _dataset(
    shown: str,
    about: str,
    inputs: np.ndarray,
    targets: np.ndarray,
    owner: np.ndarray,
    *,
    tok: CharTokenizer | WordTokenizer,
) -> Dataset:
    """The causal-LM Dataset whose splits take the blocks of inputs/targets [B, L] that owner [B] names."""
    splits = {s: SplitData(torch.from_numpy(inputs[owner == s]), torch.from_numpy(targets[owner == s])) for s in SPLITS}
    return Dataset(
        name=shown, task="causal_lm", build=lambda: splits, vocab_size=tok.vocab_size, tokenizer=tok, description=about
    )


def _load_report(
    text: str,
    pieces: list[str],
    tokenizer: str,
    tok: CharTokenizer | WordTokenizer,
    owner: np.ndarray,
    inputs: np.ndarray,
    *,
    L: int,
    n_blocks: int,
) -> dict[str, Any]:
    """The Dataset's load_report: token and block counts, split spans, held-out <unk> share (inputs [B, L])."""
    chunk = L + 1
    return {
        "tokens": len(pieces),
        "characters": len(text),
        "tokenizer": tokenizer,
        "vocab_size": tok.vocab_size,
        "block_size": L,
        "blocks": {s: int((owner == s).sum()) for s in SPLITS},
        "tokens_dropped": len(pieces) - min(len(pieces), n_blocks * chunk),
        "spans": _spans(owner, chunk, len(pieces)),
        "heldout_unk_rate": _heldout_unk_rate(inputs, owner, tok.pad_id, tok.unk_id),
    }


def _check_args(
    tokenizer: str, block_size: int, val_fraction: float, test_fraction: float, seed: int, max_bytes: int
) -> tuple[int, float, float, int, int]:
    """The checked (block_size, val_fraction, test_fraction, seed, max_bytes); refuses an unknown tokenizer."""
    if tokenizer not in _TOKENIZERS:
        raise ValueError(f"The 'tokenizer' parameter of {_WHERE} must be 'char' or 'word'. Got {tokenizer!r} instead.")
    L = check_int_range("block_size", block_size, 1, 1 << 16, where=_WHERE)
    return (L, *check_split_options(val_fraction, test_fraction, seed, max_bytes, where=_WHERE))


def _train_tokenizer(
    tokenizer: str, pieces: list[str], owner: np.ndarray, chunk: int, max_vocab: int
) -> CharTokenizer | WordTokenizer:
    """The tokenizer built from the pieces of the train blocks only (owner [B] names each block's split)."""
    train_pieces = [p for b in np.flatnonzero(owner == "train") for p in pieces[b * chunk : (b + 1) * chunk]]
    if tokenizer == "char":
        return CharTokenizer.from_pieces(train_pieces)
    return WordTokenizer.from_pieces(train_pieces, max_vocab=max_vocab)


def _read_text(path_or_bytes: Any, max_bytes: int) -> tuple[str, str | None]:
    """The decoded text and the file name (None for bytes); refuses an empty or whitespace-only text."""
    data, file_name = read_source(path_or_bytes, name="path_or_bytes", where=_WHERE, max_bytes=max_bytes)
    text = _decode_utf8(data)
    if not text.strip():
        raise ValueError(
            f"The text given to {_WHERE} is empty{' (only whitespace)' if text else ''}. "
            f"Expected a UTF-8 text file with some writing in it."
        )
    return text, file_name


def _blocks(ids: np.ndarray, n_blocks: int, L: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """ids [T] cut into inputs [B, L] and next-token targets [B, L]; a short last block is padded
    (inputs with pad_id, targets with IGNORE_INDEX)."""
    chunk = L + 1
    inputs = np.full((n_blocks, L), pad_id, dtype=np.int64)  # [B, L]
    targets = np.full((n_blocks, L), IGNORE_INDEX, dtype=np.int64)  # [B, L]
    n_full = len(ids) // chunk
    full = ids[: n_full * chunk].reshape(n_full, chunk)  # [B_full, L + 1]
    inputs[:n_full], targets[:n_full] = full[:, :-1], full[:, 1:]
    if n_blocks > n_full:  # the short last block: padded inputs, -100 targets
        tail = ids[n_full * chunk :]  # [m], 2 <= m <= L
        inputs[-1, : len(tail) - 1], targets[-1, : len(tail) - 1] = tail[:-1], tail[1:]
    return inputs, targets


def _heldout_unk_rate(inputs: np.ndarray, owner: np.ndarray, pad_id: int, unk_id: int) -> float:
    """The share of <unk> among the (non-pad) input tokens of the val and test blocks."""
    held = np.isin(owner, ["val", "test"])
    held_ids = inputs[held][inputs[held] != pad_id]
    return float((held_ids == unk_id).mean()) if held_ids.size else 0.0


def _decode_utf8(data: bytes) -> str:
    """The text, without a byte-order mark, with Windows/old-Mac line ends made '\\n'."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ValueError(
            f"The text given to {_WHERE} must be UTF-8. Got a file that starts with a UTF-16 "
            f"byte-order mark. Re-save it as UTF-8 (in most editors: Save As, encoding UTF-8)."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
        line = data[:start].count(b"\n") + 1
        raise ValueError(
            f"The text given to {_WHERE} must be UTF-8. Got byte 0x{data[start]:02x} at byte offset "
            f"{start} (line {line}), which is not valid UTF-8 (the file may be Latin-1 or "
            f"Windows-1252). Re-save it as UTF-8 (in most editors: Save As, encoding UTF-8), "
            f"e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _assign_blocks(
    n_blocks: int, vf: float, tf: float, seed: int, *, n_pieces: int, block_size: int, tokenizer: str
) -> np.ndarray:
    """The split of each block: val and test each one contiguous run, at seeded random places."""
    n_val, n_test = max(1, round(vf * n_blocks)), max(1, round(tf * n_blocks))
    n_train = n_blocks - n_val - n_test
    if n_train < 1:
        need = 3 * (block_size + 1)
        raise ValueError(
            f"The text given to {_WHERE} is too short: {n_pieces} {tokenizer} tokens make {n_blocks} "
            f"block(s) of block_size + 1 = {block_size + 1}, and train, val and test need at least one "
            f"each (at least {need} tokens). Use a longer text or a smaller block_size."
        )
    rng = np.random.default_rng(seed)
    first, second = ("val", "test") if rng.random() < 0.5 else ("test", "val")
    cuts = np.sort(rng.integers(0, n_train + 1, size=2))  # train blocks before, between and after the held-out runs
    a, b, c = int(cuts[0]), int(cuts[1] - cuts[0]), int(n_train - cuts[1])
    sizes = {"val": n_val, "test": n_test}
    return np.array(["train"] * a + [first] * sizes[first] + ["train"] * b + [second] * sizes[second] + ["train"] * c)


def _spans(owner: np.ndarray, chunk: int, n_pieces: int) -> dict[str, list[list[int]]]:
    """Per split, the [start, end) token ranges of its contiguous runs of blocks."""
    spans: dict[str, list[list[int]]] = {s: [] for s in SPLITS}
    for b, s in enumerate(owner):
        start, end = b * chunk, min((b + 1) * chunk, n_pieces)
        if spans[s] and spans[s][-1][1] == start:
            spans[s][-1][1] = end
        else:
            spans[s].append([start, end])
    return spans
