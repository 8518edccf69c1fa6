"""Generation speed of causal LMs with a KV cache (spec §15.6), models timed interleaved.

    table = generation_speed(model, batch_sizes=(1, 16), prompt_tokens=128, new_tokens=128)
    tables = speed_tables({"teacher": t, "student": s}, config)   # interleaved: A B A B …

Every run generates exactly n new tokens from prompts of exactly P random tokens (seeded, no
padding), greedy, ``min_new_tokens = max_new_tokens = n`` (a model that stops early would look
faster). TTFT (prefill) = median time of ``generate(max_new_tokens=1)``; t_e2e = median time of n
tokens; TPOT = (t_e2e − TTFT)/(n − 1); decode tokens/s = B·(n − 1)/(t_e2e − TTFT); end-to-end
tokens/s = B·n/t_e2e. Warm-up runs are discarded. ``time.perf_counter`` with
``torch.cuda.synchronize()`` before each reading on GPU. Within each repeat the models' order
alternates, so slow drifts of a shared machine fall on every model alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdcore.generation import generate


@dataclass(frozen=True)
class SpeedConfig:
    """How generation is timed."""

    batch_sizes: tuple[int, ...] = (1, 16)  # batch 1 (latency) and B_N (throughput)
    prompt_tokens: int = 128  # P: every prompt has exactly this many tokens
    new_tokens: int = 128  # n: every sequence generates exactly this many
    warmup: int = 3  # runs discarded per batch size and model
    repeats: int = 10  # timed runs R per batch size and model (even: each model is timed first in half the turns)
    seed: int = 0  # the prompts' ids

    def check(self, where: str = "generation_speed") -> None:
        rules = [
            ("new_tokens", self.new_tokens >= 2, "an integer >= 2 (TPOT needs a second token)"),
            ("repeats", self.repeats >= 1, "an integer >= 1"),
            ("warmup", self.warmup >= 0, "an integer >= 0"),
            ("prompt_tokens", self.prompt_tokens >= 1, "an integer >= 1"),
            ("batch_sizes", len(self.batch_sizes) > 0 and min(self.batch_sizes) >= 1, "integers >= 1"),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise ValueError(
                    f"The '{name}' parameter of {where} must be {expected}. Got {getattr(self, name)!r} instead."
                )


def vocab_size(model: Any) -> int:
    """The model's vocabulary (an adapter's output size, a config's vocab_size)."""
    for obj in (model, getattr(model, "model", None)):
        for owner, key in (
            (obj, "output_size"),
            (getattr(obj, "config", None), "vocab_size"),
            (getattr(obj, "cfg", None), "vocab_size"),
        ):
            value = getattr(owner, key, None)
            if isinstance(value, int):
                return value
    raise ValueError(f"Could not tell the vocabulary size of {type(model).__name__}: pass vocab_size=.")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(model: Any) -> torch.device:
    module = getattr(model, "model", model)
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def _timed(model: Any, ids: torch.Tensor, n: int) -> float:
    """Seconds for one generate() of exactly n new tokens; refuses a run that made another number."""
    device = _device(model)
    _sync(device)
    t0 = time.perf_counter()
    res = generate(model, ids, max_new_tokens=n, min_new_tokens=n, eos_id=None)
    _sync(device)
    dt = time.perf_counter() - t0
    if res.sequences.shape[1] != ids.shape[1] + n:
        raise ValueError(
            f"A timed generation made {res.sequences.shape[1] - ids.shape[1]} new tokens instead of {n}: "
            f"speed is only comparable when every sequence generates exactly n tokens."
        )
    return dt


def _row(B: int, cfg: SpeedConfig, ttft: list[float], e2e: list[float], peak: float) -> dict[str, float]:
    t1, te = float(np.median(ttft)), float(np.median(e2e))
    n = cfg.new_tokens
    q1, q3 = np.percentile(e2e, [25, 75])
    return {
        "batch_size": B,
        "prompt_tokens": cfg.prompt_tokens,
        "new_tokens": n,
        "ttft_s": t1,
        "e2e_s": te,
        "tpot_s": (te - t1) / (n - 1),
        "decode_tok_s": B * (n - 1) / (te - t1) if te > t1 else float("nan"),
        "e2e_tok_s": B * n / te,
        "iqr_e2e_s": float(q3 - q1),
        "repeats": cfg.repeats,
        "peak_mem_gib": peak,
    }


def speed_tables(
    models: dict[str, Any], config: SpeedConfig | None = None, *, vocab: int | None = None
) -> dict[str, pd.DataFrame]:
    """{name: one row per batch size} for every model, timed interleaved on the same prompts."""
    cfg = config or SpeedConfig()
    cfg.check()
    V = vocab if vocab is not None else min(vocab_size(m) for m in models.values())
    names = list(models)
    rows: dict[str, list[dict]] = {k: [] for k in names}
    for B in cfg.batch_sizes:
        gen = torch.Generator().manual_seed(cfg.seed + B)
        ids = torch.randint(0, V, (B, cfg.prompt_tokens), generator=gen)
        for _ in range(cfg.warmup):
            for k in names:
                _timed(models[k], ids, 1), _timed(models[k], ids, cfg.new_tokens)
        ttft: dict[str, list[float]] = {k: [] for k in names}
        e2e: dict[str, list[float]] = {k: [] for k in names}
        for r in range(cfg.repeats):
            order = names if r % 2 == 0 else names[::-1]  # A B, then B A: drifts fall on both alike
            for k in order:
                ttft[k].append(_timed(models[k], ids, 1))
            for k in order:
                e2e[k].append(_timed(models[k], ids, cfg.new_tokens))
        for k in names:
            rows[k].append(_row(B, cfg, ttft[k], e2e[k], _peak_gib(models[k], ids, cfg.new_tokens)))
    return {k: pd.DataFrame(v) for k, v in rows.items()}


def _peak_gib(model: Any, ids: torch.Tensor, n: int) -> float:
    """Peak GPU memory of one generation (GiB); NaN on CPU (not measured)."""
    device = _device(model)
    if device.type != "cuda":
        return float("nan")
    torch.cuda.reset_peak_memory_stats(device)
    generate(model, ids, max_new_tokens=n, min_new_tokens=n, eos_id=None)
    return torch.cuda.max_memory_allocated(device) / 2**30


def generation_speed(
    model: Any,
    tokenizer: Any = None,
    *,
    batch_sizes: tuple[int, ...] = (1, 16),
    prompt_tokens: int = 128,
    new_tokens: int = 128,
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per batch size: ttft_s, e2e_s, tpot_s, decode_tok_s, e2e_tok_s (medians), iqr_e2e_s, peak_mem_gib."""
    cfg = SpeedConfig(tuple(batch_sizes), prompt_tokens, new_tokens, warmup, repeats, seed)
    vocab = getattr(tokenizer, "vocab_size", None) if tokenizer is not None else None
    return speed_tables({"model": model}, cfg, vocab=vocab if isinstance(vocab, int) else None)["model"]
