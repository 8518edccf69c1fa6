"""Teacher targets for sequence-level distillation (spec §15.1): generated once, cached with their config.

    ts = generate_targets(teacher, prompts, decoding="greedy", max_new_tokens=32, eos_id=0)
    ts.completions   # the teacher's completion ŷ of each prompt (stop token included)
    ts.truncated     # per prompt: reached max_new_tokens without a stop token (kept as is)
    ts.config        # decoding settings, seed, the teacher's weight hash: what the cache is keyed by

`cached_targets(cache_dir, teacher, prompts, ...)` stores a TargetSet as JSON (no pickle) under a
key of the teacher's weights, the prompts and every generation setting, and reads it back when
the same key comes again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kdcore.generation import GenerationConfig, generate

DECODINGS = ("beam", "greedy", "sample")


@dataclass
class TargetSet:
    """The teacher's completions of a list of prompts, and how they were made."""

    prompts: list[list[int]]  # prompt ids
    completions: list[list[int]]  # ŷ per prompt (the first stop token included)
    truncated: list[bool]  # reached max_new_tokens without a stop token
    config: dict[str, Any]  # decoding, num_beams, max_new_tokens, temperature, top_k, top_p, seed, eos_id, teacher hash
    from_cache: bool = False  # read back from the cache instead of generated


def weights_hash(model: Any) -> str:
    """sha256 (16 hex) of a model's state dict: names, shapes, dtypes and bytes."""
    module = getattr(model, "model", model)
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _check(decoding: str, num_beams: int, n_best: int, prompts: list[list[int]]) -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"The 'decoding' parameter of generate_targets must be one of {DECODINGS}. Got {decoding!r}.")
    if num_beams < 1:
        raise ValueError(f"The 'num_beams' parameter of generate_targets must be an integer >= 1. Got {num_beams}.")
    if n_best > num_beams:
        raise ValueError(
            f"The 'n_best' parameter of generate_targets must be <= num_beams ({num_beams}). Got {n_best}."
        )
    if n_best != 1:
        raise ValueError(
            f"The 'n_best' parameter of generate_targets supports 1 (the best sequence) only. Got {n_best}."
        )
    if not prompts:
        raise ValueError("The 'prompts' parameter of generate_targets must be a non-empty list of prompts. Got [].")


def generate_targets(
    teacher: Any,
    prompts: list[list[int]],
    *,
    decoding: str = "beam",
    num_beams: int = 5,
    n_best: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    eos_id: int | None = None,
    pad_id: int = 0,
    batch_size: int = 64,
) -> TargetSet:
    """The teacher's completions ŷ (beam = the paper's mode, greedy = one beam, sample = seeded
    τ_s/top-k/top-p, batch b seeded with seed + its first row); prompts go in left-padded batches."""
    from kdcore.data.prompts import pad_prompts

    _check(decoding, num_beams, n_best, prompts)
    beams = num_beams if decoding == "beam" else 1
    cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=decoding == "sample",
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_beams=beams,
        seed=seed,
    )
    completions: list[list[int]] = []
    truncated: list[bool] = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = pad_prompts(prompts[start : start + batch_size], pad_id)
        res = generate(teacher, ids, mask, config=cfg, eos_id=eos_id, pad_id=pad_id, seed=seed + start)
        completions += res.completions()
        truncated += res.truncated.tolist()
    config = dict(asdict(cfg), decoding=decoding, eos_id=eos_id, teacher=weights_hash(teacher), n_best=n_best)
    return TargetSet([list(p) for p in prompts], completions, truncated, config)


def target_key(teacher_hash: str, prompts: list[list[int]], settings: dict[str, Any]) -> str:
    """The cache key: the teacher's weights, the prompts and every generation setting."""
    blob = json.dumps({"teacher": teacher_hash, "prompts": prompts, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_targets(cache_dir: str | Path | None, teacher: Any, prompts: list[list[int]], **settings: Any) -> TargetSet:
    """generate_targets(teacher, prompts, **settings), stored once as JSON in cache_dir
    (``seqkd-<key>.json``) and read back for the same teacher weights, prompts and settings."""
    if cache_dir is None:
        return generate_targets(teacher, prompts, **settings)
    path = Path(cache_dir) / f"seqkd-{target_key(weights_hash(teacher), prompts, settings)}.json"
    if path.is_file():
        d = json.loads(path.read_text(encoding="utf-8"))
        return TargetSet(d["prompts"], d["completions"], d["truncated"], d["config"], from_cache=True)
    ts = generate_targets(teacher, prompts, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in asdict(ts).items() if k != "from_cache"}), encoding="utf-8")
    tmp.replace(path)
    return ts
