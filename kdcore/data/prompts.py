"""Prompt/completion datasets for sequence-level distillation (spec §15.0).

    ps = tinylang_copy_prompts("train")                    # built in: <s> run <c> -> copy <s>
    ps = load_prompt_file("qa.jsonl", tokenizer)           # JSONL or CSV with prompt and completion fields
    ids, mask = pad_prompts(ps.prompts, ps.pad_id)         # left-padded [B, P] for generation
    split = sft_split(ps.prompts, ps.completions, ps.pad_id)  # right-padded x ⧺ y for training

Training rows are right-padded (prompt ⧺ completion ⧺ pad), so a causal model needs no attention
mask: padding only ever follows the real tokens. Targets hold the next token at the kept positions
j = P − 1 … P + C − 2 and −100 elsewhere: prompt tokens are never targets, padding never counts.
A completion ends with its stop token when the set has one (the student must learn to stop).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kdcore.data.base import Dataset, SplitData

IGNORE_INDEX = -100
_FORMATS = (".jsonl", ".json", ".csv")


@dataclass
class PromptSet:
    """Tokenised prompts and (optionally) their reference completions."""

    prompts: list[list[int]]  # token ids of each prompt
    completions: list[list[int]] | None  # reference completion ids (stop token included), or None
    eos_id: int | None  # the stop token (None: completions run to max_new_tokens)
    pad_id: int  # written on padding (masks never read it)
    name: str = ""  # where it came from


def pad_prompts(prompts: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-padded prompts (ids [B, P], mask [B, P], 1 on real tokens) for generation."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("The 'prompts' argument of pad_prompts must be a non-empty list of non-empty prompts.")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p) :] = 1
    return ids, mask


def sft_split(
    prompts: list[list[int]], completions: list[list[int]], pad_id: int, *, length: int | None = None
) -> SplitData:
    """Right-padded training rows x ⧺ y: inputs [N, L], targets [N, L] (next token on kept positions,
    else −100), extras prompt_len [N] and completion_len [N]. `length` fixes L (else the longest row)."""
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(
            f"sft_split needs one completion per prompt and at least one pair. Got {len(prompts)} prompts and "
            f"{len(completions)} completions."
        )
    rows = [p + c for p, c in zip(prompts, completions)]
    L = length if length is not None else max(len(r) for r in rows)
    if max(len(r) for r in rows) > L:
        raise ValueError(
            f"The 'length' argument of sft_split ({L}) is shorter than the longest row ({max(map(len, rows))})."
        )
    ids = np.full((len(rows), L), pad_id, dtype=np.int64)
    targets = np.full((len(rows), L), IGNORE_INDEX, dtype=np.int64)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if not c:
            raise ValueError(f"Completion {i} of sft_split is empty: every row needs at least one completion token.")
        ids[i, : len(p) + len(c)] = p + c
        targets[i, len(p) - 1 : len(p) + len(c) - 1] = c  # position j predicts token j + 1
    extras = {
        "prompt_len": torch.tensor([len(p) for p in prompts]),
        "completion_len": torch.tensor([len(c) for c in completions]),
    }
    return SplitData(torch.from_numpy(ids), torch.from_numpy(targets), None, extras)


def split_prompts(split: SplitData) -> tuple[list[list[int]], list[list[int]]]:
    """(prompts, completions) back from an `sft_split` (needs its prompt_len/completion_len extras)."""
    if "prompt_len" not in split.extras or "completion_len" not in split.extras:
        raise ValueError(
            "This split has no prompt_len/completion_len extras: it is not prompt/completion data. "
            "Build it with kdcore.data.prompts.sft_split (or use a prompt set: tinylang_copy_prompts, load_prompt_file)."
        )
    ids = split.inputs.tolist()
    P, C = split.extras["prompt_len"].tolist(), split.extras["completion_len"].tolist()
    return [r[:p] for r, p in zip(ids, P)], [r[p : p + c] for r, p, c in zip(ids, P, C)]


def tinylang_copy_prompts(split: str = "train", n: int | None = None) -> PromptSet:
    """The copy task on tinylang's split: prompt = ``<s> run <c>`` (the first block of each sequence),
    completion = the run's copy followed by ``<s>``, the stop token. Sequences whose first copy does
    not finish within the model's context (64 tokens) are left out."""
    from kdcore.data.tinylang import BOS, COPY, SEQ_LEN, SPLIT_SEEDS, SPLIT_SIZES, generate

    if split not in SPLIT_SEEDS:
        raise ValueError(
            f"The 'split' argument of tinylang_copy_prompts must be one of {list(SPLIT_SEEDS)}. Got {split!r}."
        )
    seq = generate(SPLIT_SIZES[split], SPLIT_SEEDS[split])["seq"]  # [N, 65]
    prompts, completions = [], []
    for row in seq.tolist():
        c = row.index(COPY) if COPY in row else len(row)
        run = row[1:c]
        end = c + 1 + len(run)
        if end >= SEQ_LEN or row[c + 1 : end] != run or row[end] != BOS:
            continue
        prompts.append(row[: c + 1])
        completions.append(run + [BOS])
    if n is not None:
        prompts, completions = prompts[:n], completions[:n]
    return PromptSet(prompts, completions, eos_id=BOS, pad_id=BOS, name=f"tinylang copy ({split})")


def _records(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def has_prompt_fields(path: str | Path, prompt_field: str = "prompt", completion_field: str = "completion") -> bool:
    """True when path is a JSONL/JSON/CSV file whose first record has both fields (reads the first record only)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in _FORMATS or not p.is_file():
        return False
    try:
        with p.open(newline="", encoding="utf-8") as f:
            if p.suffix.lower() == ".csv":
                first: Any = set(next(csv.reader(f), []))
            else:
                line = next((x for x in f if x.strip()), "")
                first = json.loads(line) if line.lstrip().startswith("{") else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return prompt_field in first and completion_field in first


def _encode(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    """Ids of text: HF tokenizers with or without their special tokens (BOS), others plainly."""
    if hasattr(tokenizer, "eos_token_id"):
        return list(tokenizer.encode(text, add_special_tokens=special))
    return list(tokenizer.encode(text))


def load_prompt_file(
    path: str | Path,
    tokenizer: Any,
    *,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
    require_completion: bool = True,
    eos_id: int | None = None,
) -> PromptSet:
    """A JSONL (one object a line), JSON list or CSV file of prompts and completions, tokenised by
    the pair's tokenizer. The completion gets the stop token appended (eos_id, else the tokenizer's).
    `require_completion=False` accepts prompts alone (completions None)."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in _FORMATS or not p.is_file():
        raise ValueError(
            f"The 'path' argument of load_prompt_file must be an existing {', '.join(_FORMATS)} file. Got {str(p)!r}."
        )
    records = _records(p)
    if not records:
        raise ValueError(f"The prompt file {str(p)!r} holds no records.")
    first = records[0]
    missing = [f for f in (prompt_field, completion_field if require_completion else None) if f and f not in first]
    if missing:
        raise ValueError(
            f"The prompt file {str(p)!r} has no {missing[0]!r} field (its fields: {sorted(first)}). Sequence-level "
            f"distillation needs '{prompt_field}' and '{completion_field}': name yours with prompt_field= / completion_field=."
        )
    stop = eos_id if eos_id is not None else getattr(tokenizer, "eos_token_id", None)
    prompts = [_encode(tokenizer, str(r[prompt_field]), special=True) for r in records]
    completions = None
    if completion_field in first:
        tail = [stop] if stop is not None else []
        completions = [_encode(tokenizer, str(r[completion_field]), special=False) + tail for r in records]
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if isinstance(pad, int) else (stop if stop is not None else 0)
    return PromptSet(prompts, completions, eos_id=stop, pad_id=pad, name=p.name)


def prompt_dataset(
    splits: dict[str, PromptSet], *, vocab_size: int, tokenizer: Any = None, name: str = "prompts"
) -> Dataset:
    """A causal-LM Dataset of prompt/completion rows (`sft_split` per split: train, val, test);
    load_report holds the stop and pad ids ("eos_id", "pad_id"). Every split needs completions."""
    missing = [k for k, ps in splits.items() if ps.completions is None]
    if missing or not {"train", "val"} <= set(splits):
        raise ValueError(
            f"prompt_dataset needs train and val prompt sets with completions. Got splits {sorted(splits)}"
            + (f", without completions: {missing}" if missing else "")
            + ". Give the file a completion field (sequence-level distillation validates on reference completions)."
        )
    first = next(iter(splits.values()))
    if "test" not in splits:
        splits = dict(splits, test=splits["val"])

    def build() -> dict[str, SplitData]:
        return {k: sft_split(ps.prompts, ps.completions or [], ps.pad_id) for k, ps in splits.items()}

    return Dataset(
        name=name,
        task="causal_lm",
        build=build,
        vocab_size=vocab_size,
        tokenizer=tokenizer,
        description="Prompts with reference completions (sequence-level distillation).",
        load_report={
            "eos_id": first.eos_id,
            "pad_id": first.pad_id,
            **{f"n_{k}": len(v.prompts) for k, v in splits.items()},
        },
    )


def tinylang_copy_dataset() -> Dataset:
    """tinylang's copy task as prompt/completion data (train, val, test of `tinylang_copy_prompts`)."""
    from kdcore.data.tinylang import VOCAB, TinyLangTokenizer

    splits = {k: tinylang_copy_prompts(k) for k in ("train", "val", "test")}
    return prompt_dataset(splits, vocab_size=VOCAB, tokenizer=TinyLangTokenizer(), name="tinylang copy")


def load_prompt_dataset(
    path: str | Path, model_dir: str | Path, *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Dataset:
    """A prompt/completion file (JSONL, JSON list or CSV with 'prompt' and 'completion') tokenised by
    the tokenizer in model_dir, split by a seeded permutation into train, val and test."""
    from kdcore.adapters.hf_files import read_config
    from kdcore.data.hf_tokenizer import load_hf_tokenizer

    tok = load_hf_tokenizer(model_dir)
    ps = load_prompt_file(path, tok)
    n = len(ps.prompts)
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise ValueError(
            f"The prompt file {str(path)!r} has {n} records: too few for train, val and test (need 3 or more)."
        )
    parts = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    assert ps.completions is not None  # load_prompt_file requires them
    splits = {
        k: PromptSet([ps.prompts[i] for i in idx], [ps.completions[i] for i in idx], ps.eos_id, ps.pad_id, ps.name)
        for k, idx in parts.items()
    }
    vocab = read_config(Path(model_dir)).get("vocab_size") or len(tok)
    return prompt_dataset(splits, vocab_size=int(vocab), tokenizer=tok, name=Path(path).name)
