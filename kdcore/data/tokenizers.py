"""Small tokenizers of our own for the user's text: one token per character, or per word.

Both are built from the training text only, put <pad> at id 0 and <unk> at id 1, order the rest
deterministically, and round-trip through a JSON-ready dict (to_dict / from_dict).

- CharTokenizer: every character is a token; vocabulary in code-point order.
- WordTokenizer: a token is a run of letters/digits/underscore, one punctuation character, or a run
  of whitespace, so decode(encode(text)) gives the text back exactly (words outside the vocabulary
  come back as <unk>). Vocabulary by frequency (most frequent first), ties in code-point order,
  capped at max_vocab.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
_WORD_RE = re.compile(r"\w+|\s+|[^\w\s]")  # words, whitespace runs, single punctuation marks
_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})


class _VocabTokenizer:
    """Shared encode/decode over a vocabulary list whose first entries are SPECIALS."""

    kind = ""

    def __init__(self, vocab: list[str]):
        vocab = list(vocab)
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f"The 'vocab' argument of {type(self).__name__} must start with {list(SPECIALS)}. "
                f"Got {vocab[: len(SPECIALS)]!r} instead."
            )
        if len(set(vocab)) != len(vocab):
            dup = next(t for t, n in Counter(vocab).items() if n > 1)
            raise ValueError(
                f"The 'vocab' argument of {type(self).__name__} must not repeat a token. Got {dup!r} more than once."
            )
        self.vocab = vocab
        self._ids = {t: i for i, t in enumerate(vocab)}
        self.pad_id = self._ids[PAD]
        self.unk_id = self._ids[UNK]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @staticmethod
    def split(text: str) -> list[str]:
        """The text cut into token strings (before the vocabulary lookup)."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; pieces outside the vocabulary become unk_id."""
        return self.encode_pieces(self.split(text))

    def encode_pieces(self, pieces: Iterable[str]) -> list[int]:
        """Token ids of pieces already cut by split; pieces outside the vocabulary become unk_id."""
        return [self._ids.get(piece, self.unk_id) for piece in pieces]

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(
                f"The 'ids' argument of {type(self).__name__}.decode must hold token ids in "
                f"[0, {len(self.vocab) - 1}]. Got {bad[0]}."
            )
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: <pad> dropped, <unk> written as '<unk>'."""
        return "".join(self.vocab[i] for i in self._check_ids(ids) if i != self.pad_id)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One display string per id, with whitespace made visible (␣ space, ↵ newline, ⇥ tab)."""
        return [t if t in SPECIALS else t.translate(_VISIBLE) for t in (self.vocab[i] for i in self._check_ids(ids))]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer | WordTokenizer:
        """The tokenizer that to_dict wrote (a CharTokenizer or WordTokenizer)."""
        kinds: dict[str, type[CharTokenizer] | type[WordTokenizer]] = {"char": CharTokenizer, "word": WordTokenizer}
        if not isinstance(d, dict) or d.get("kind") not in kinds or not isinstance(d.get("vocab"), list):
            raise ValueError(
                f"The 'd' argument of {cls.__name__}.from_dict must be a dict with 'kind' in "
                f"{sorted(kinds)} and a 'vocab' list, as written by to_dict. Got {str(d)[:80]!r} instead."
            )
        target = kinds[d["kind"]]
        if cls is not _VocabTokenizer and target is not cls:
            raise ValueError(
                f"The 'd' argument of {cls.__name__}.from_dict holds a {target.__name__} "
                f"(kind {d['kind']!r}). Use {target.__name__}.from_dict or tokenizer_from_dict."
            )
        return target(d["vocab"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.vocab == self.vocab


class CharTokenizer(_VocabTokenizer):
    """One token per character. Build with CharTokenizer.from_text(training_text)."""

    kind = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The characters of `text`, in code-point order, after <pad> and <unk>."""
        return cls.from_pieces(cls.split(text))

    @classmethod
    def from_pieces(cls, pieces: Iterable[str]) -> CharTokenizer:
        """The distinct characters in `pieces` (from split), in code-point order, after <pad> and <unk>."""
        return cls([*SPECIALS, *sorted(set(pieces) - set(SPECIALS))])


class WordTokenizer(_VocabTokenizer):
    """One token per word, punctuation mark or whitespace run. Build with WordTokenizer.from_text(text)."""

    kind = "word"

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD_RE.findall(text)

    @classmethod
    def from_text(cls, text: str, *, max_vocab: int = 20000, min_count: int = 1) -> WordTokenizer:
        """The pieces of `text` seen at least min_count times, most frequent first, at most max_vocab in all."""
        return cls.from_pieces(cls.split(text), max_vocab=max_vocab, min_count=min_count)

    @classmethod
    def from_pieces(cls, pieces: Iterable[str], *, max_vocab: int = 20000, min_count: int = 1) -> WordTokenizer:
        """Like from_text, over pieces already cut by split (so block edges never merge two words)."""
        if isinstance(max_vocab, bool) or not isinstance(max_vocab, int) or max_vocab < len(SPECIALS) + 1:
            raise ValueError(
                f"The 'max_vocab' parameter of WordTokenizer must be an integer >= "
                f"{len(SPECIALS) + 1}. Got {max_vocab!r} instead."
            )
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(
                f"The 'min_count' parameter of WordTokenizer must be an integer >= 1. Got {min_count!r} instead."
            )
        counts = Counter(pieces)
        for s in SPECIALS:
            counts.pop(s, None)
        ranked = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIALS, *ranked[: max_vocab - len(SPECIALS)]])


def tokenizer_from_dict(d: dict[str, Any]) -> CharTokenizer | WordTokenizer:
    """A tokenizer saved with to_dict (e.g. read back from JSON)."""
    return _VocabTokenizer.from_dict(d)
