"""`tinylang`: a generated token language for causal LMs where attention has visible structure.

A sequence is a string of blocks ``<s> run <c> copy <s> run <c> copy ...``:

- a *run* is drawn from a sparse Markov chain over 36 content tokens: the first token uniformly,
  each next token from the current token's successors (four of them, probabilities
  0.4/0.3/0.2/0.1), and after every run token the marker ``<c>`` comes with probability 0.1;
- after ``<c>`` the run is repeated token by token (the *copy*), then ``<s>`` starts a new run.

Run positions are predictable from the current token alone (local rule, position kind 0): their
true next-token distribution is known and has entropy > 0. Copy positions (kind 1) are
deterministic, but only by finding where the current token sat in the run and reading the token
after it: the induction-head mechanism of Olsson et al. 2022 ("In-context Learning and Induction
Heads", arXiv 2209.11895), which needs two attention layers. The ``<s>`` that closes a copy is
deterministic too (kind -1, other). The generator returns the true next-token distribution at
every position (``extras["true_probs"]``) and the kind of every position (``extras["position_kind"]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from kdcore.data.base import Dataset, SplitData

SPECIALS = ("<s>", "<c>")  # run start (also the first token of every sequence), copy marker
CONTENT = tuple("abcdefghijklmnopqrstuvwxyz0123456789")  # 36 content tokens
TOKENS = SPECIALS + CONTENT
BOS, COPY = 0, 1
VOCAB = len(TOKENS)  # 38
SEQ_LEN = 64  # model input length; the generator draws SEQ_LEN + 1 tokens
COPY_PROB = 0.1  # chance that a run ends (the marker <c> follows) after each run token
SUCCESSOR_PROBS = (0.4, 0.3, 0.2, 0.1)  # over the 4 successors of a content token
SUCCESSOR_STEPS = (1, 2, 3, 5)  # successors: these many steps ahead on a fixed random cycle
CHAIN_SEED = 7  # fixes the cycle, hence the Markov chain
SPLIT_SIZES = {"train": 4096, "val": 512, "test": 512}
SPLIT_SEEDS = {"train": 11, "val": 22, "test": 33}

KIND_LOCAL, KIND_COPY, KIND_OTHER = 0, 1, -1


class TinyLangTokenizer:
    """Maps between the language's tokens and ids. Text is tokens separated by spaces; a word
    that is not a token is read character by character ("abc" -> a b c)."""

    special_ids = (BOS, COPY)  # <s> and <c>: markers, not content (CKA can leave them out)

    def __init__(self) -> None:
        self._ids = {t: i for i, t in enumerate(TOKENS)}

    @property
    def vocab_size(self) -> int:
        return VOCAB

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; raises ValueError naming the first unknown character."""
        ids = []
        for word in text.split():
            if word in self._ids:
                ids.append(self._ids[word])
                continue
            for ch in word:
                if ch not in self._ids:
                    raise ValueError(
                        f"The 'text' argument of TinyLangTokenizer.encode holds {ch!r}, which is not "
                        f"a tinylang token. Use {', '.join(SPECIALS)} or one of '{''.join(CONTENT)}'."
                    )
                ids.append(self._ids[ch])
        return ids

    def tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """Display strings of the given ids."""
        out = []
        for i in ids.tolist() if hasattr(ids, "tolist") else list(ids):
            if not 0 <= int(i) < VOCAB:
                raise ValueError(
                    f"The 'ids' argument of TinyLangTokenizer.tokens must hold ids in [0, {VOCAB - 1}]. Got {int(i)}."
                )
            out.append(TOKENS[int(i)])
        return out

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Tokens joined by spaces (encode(decode(ids)) == ids)."""
        return " ".join(self.tokens(ids))


def transition_matrix() -> np.ndarray:
    """The local rule: P(next | current) [VOCAB, VOCAB] for content tokens, before the copy marker.

    Rows of the special tokens hold the distribution of a run's first token (uniform on content).
    """
    n = len(CONTENT)
    cycle = np.random.default_rng(CHAIN_SEED).permutation(n) + len(SPECIALS)  # token ids in cycle order
    T = np.zeros((VOCAB, VOCAB), dtype=np.float64)
    for pos, tok in enumerate(cycle):
        for step, p in zip(SUCCESSOR_STEPS, SUCCESSOR_PROBS):
            T[tok, cycle[(pos + step) % n]] += p
    T[list(range(len(SPECIALS))), len(SPECIALS) :] = 1.0 / n
    return T


def _next_table() -> np.ndarray:
    """Rows of true next-token distributions [2·VOCAB + 1, VOCAB]: 0..V-1 run positions at token v
    (the local rule mixed with the copy marker), V..2V-1 one-hot on v, 2V a run's first token."""
    T = transition_matrix()
    run = (1.0 - COPY_PROB) * T
    run[:, COPY] += COPY_PROB
    return np.concatenate([run, np.eye(VOCAB), T[BOS][None]], axis=0)


def generate(n: int, seed: int) -> dict[str, np.ndarray]:
    """n sequences of SEQ_LEN + 1 tokens with, for each of the first SEQ_LEN positions, the row
    of ``_next_table()`` giving the true distribution of the next token, and the position kind.

    Vectorised over sequences: one step of numpy per position.
    """
    rng = np.random.default_rng(seed)
    table = _next_table()
    cdf = np.cumsum(table, axis=1)
    L = SEQ_LEN + 1
    seq = np.zeros((n, L), dtype=np.int64)
    row = np.zeros((n, L - 1), dtype=np.int64)
    kind = np.zeros((n, L - 1), dtype=np.int8)
    rows_n = np.arange(n)
    mode = np.zeros(n, dtype=np.int8)  # 0: next is a run's first token, 1: in a run, 2: copying
    run_start = np.zeros(n, dtype=np.int64)  # index of the current run's first token
    run_end = np.zeros(n, dtype=np.int64)  # index of its last token (set when <c> is drawn)
    ptr = np.zeros(n, dtype=np.int64)  # copying: index of the token to copy next
    u = rng.random((n, L - 1))
    for t in range(L - 1):
        cur = seq[:, t]
        start, in_run, copying = mode == 0, mode == 1, mode == 2
        done = copying & (ptr > run_end)  # the copy is complete: <s> follows
        copying &= ~done
        r = np.where(start, 2 * VOCAB, np.where(in_run, cur, VOCAB + seq[rows_n, np.minimum(ptr, t)]))
        r = np.where(done, VOCAB + BOS, r)
        drawn = (u[:, t, None] > cdf[r]).sum(axis=1).clip(max=VOCAB - 1)  # inverse-CDF sampling
        nxt = np.where(copying, seq[rows_n, np.minimum(ptr, t)], np.where(done, BOS, drawn))
        seq[:, t + 1] = nxt
        row[:, t] = r
        kind[:, t] = np.where(copying, KIND_COPY, np.where(done, KIND_OTHER, KIND_LOCAL))
        run_start = np.where(start, t + 1, run_start)
        run_end = np.where(in_run & (nxt == COPY), t, run_end)
        ptr = np.where(in_run & (nxt == COPY), run_start, np.where(copying, ptr + 1, ptr))
        mode = np.where(start, 1, np.where(in_run & (nxt == COPY), 2, np.where(done, 0, mode))).astype(np.int8)
    return {"seq": seq, "row": row, "kind": kind}


def true_entropy(true_probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each known distribution [..., V] -> [...] (NaN where unknown)."""
    p = true_probs.double()
    h = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(-1)
    return torch.where(torch.isnan(p).any(-1), torch.nan, h).to(true_probs.dtype)


def _build() -> dict[str, SplitData]:
    table = torch.from_numpy(_next_table().astype(np.float32))
    out = {}
    for split, n in SPLIT_SIZES.items():
        g = generate(n, SPLIT_SEEDS[split])
        seq = torch.from_numpy(g["seq"])
        inputs, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()  # [N, L] each
        extras = {
            "true_probs": table[torch.from_numpy(g["row"])],  # [N, L, V]
            "position_kind": torch.from_numpy(g["kind"]),
        }  # [N, L] int8
        out[split] = SplitData(inputs, targets, None, extras)  # every position has a next token
    return out


def tinylang() -> Dataset:
    """The generated token language (38 tokens, sequences of 64)."""
    return Dataset(
        name="tinylang",
        task="causal_lm",
        build=_build,
        vocab_size=VOCAB,
        tokenizer=TinyLangTokenizer(),
        description="A generated token language whose runs follow a known Markov rule and whose copies "
        "repeat the previous run, so a model needs induction heads to predict them.",
    )
