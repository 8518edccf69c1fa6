"""Text generation for causal LMs with a key/value cache, and the masks of spec §15.0.

    res = generate(adapter, prompt_ids, prompt_mask, max_new_tokens=32, eos_id=2, pad_id=0)
    res.sequences        # [B, P + N] left-padded prompts ⧺ generated tokens (pad after each stop token)
    res.completion_mask  # [B, P + N] 1 on kept completion tokens: up to and including the first stop token
    res.targets()        # [B, P + N] next-token targets (-100 where nothing is learned), the runner's format

Hugging Face causal LMs generate with their own ``generate`` (``use_cache=True``), under a fresh
``GenerationConfig`` built from the arguments only (a checkpoint's own sampling defaults, such as
top_k 50, never apply). Models with ``forward_cached(ids, positions, key_mask, past)`` (the
tinylang transformers) run an incremental loop over their cache; any other module runs a loop
that recomputes the whole sequence at every step (no cache: correct, slower; unpadded prompts only).

Sampling follows HF's order: logits / temperature, then top-k, then top-p (nucleus), then one
draw per row from a ``torch.Generator`` seeded with ``seed`` (HF models: the global RNG, forked
and seeded for the call), so a fixed seed gives the same tokens. Masks come from the generation
lengths and the prompt mask, never from ``id == pad_id`` (pad = eos for GPT-2/Llama tokenizers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

IGNORE_INDEX = -100  # = kdcore.methods.IGNORE_INDEX


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings (HF ``generate`` names)."""

    max_new_tokens: int = 128  # N: new tokens per sequence at most
    do_sample: bool = False  # False: greedy (one beam) or beam search (num_beams > 1)
    temperature: float = 1.0  # sampling temperature τ_s (sampling only)
    top_k: int = 0  # keep the k most likely tokens (0 = off)
    top_p: float = 1.0  # nucleus: the smallest set with probability ≥ top_p (1.0 = off)
    num_beams: int = 1  # beam search width (HF models only)
    min_new_tokens: int = 0  # stop tokens are suppressed before this many new tokens (speed runs: = N)
    seed: int = 0  # seeds the sampling generator

    def check(self, where: str = "generate") -> None:
        """Raise ValueError naming the first bad setting."""
        rules = [
            ("max_new_tokens", self.max_new_tokens >= 1, "an integer >= 1"),
            ("temperature", not self.do_sample or self.temperature > 0, "a float > 0 when sampling"),
            ("top_k", self.top_k >= 0, "an integer >= 0 (0 = off)"),
            ("top_p", 0 < self.top_p <= 1, "a float in (0, 1] (1.0 = off)"),
            ("num_beams", self.num_beams >= 1, "an integer >= 1"),
            ("min_new_tokens", 0 <= self.min_new_tokens <= self.max_new_tokens, "in [0, max_new_tokens]"),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise ValueError(
                    f"The '{name}' parameter of {where} must be {expected}. Got {getattr(self, name)!r} instead."
                )
        if self.do_sample and self.num_beams > 1:
            raise ValueError(
                f"The 'num_beams' parameter of {where} must be 1 when do_sample is True (beam sampling is not "
                f"supported). Got {self.num_beams}: use do_sample=False for beam search."
            )


@dataclass
class GenerationResult:
    """Prompts and their generated completions, with the masks of §15.0."""

    sequences: Tensor  # [B, P + N] left-padded prompt ⧺ completion (pad_id after the kept tokens)
    attention_mask: Tensor  # [B, P + N] 1 on real prompt tokens and kept completion tokens
    completion_mask: Tensor  # [B, P + N] 1 on kept completion tokens only
    prompt_len: int  # P: columns of the left-padded prompt block (the first completion column)
    lengths: Tensor  # [B] kept completion tokens per row (the first stop token included)
    truncated: Tensor  # [B] bool: reached max_new_tokens without a stop token (kept as is)
    config: GenerationConfig  # the settings that produced it

    def targets(self) -> Tensor:
        """Next-token targets [B, P + N]: position j holds token j + 1 where j + 1 is a kept
        completion token, else -100 (so positions P − 1 … P + C − 2 are kept, §15.0)."""
        out = torch.full_like(self.sequences, IGNORE_INDEX)
        keep = self.completion_mask[:, 1:].bool()  # [B, P + N − 1]
        out[:, :-1] = torch.where(keep, self.sequences[:, 1:], out[:, :-1])
        return out

    def completions(self) -> list[list[int]]:
        """The kept completion ids of each row (stop token included)."""
        gen = self.sequences[:, self.prompt_len :].tolist()
        return [row[: int(n)] for row, n in zip(gen, self.lengths.tolist())]


def context_length(model: nn.Module) -> int | None:
    """The longest input a model takes (learned or configured positions), None when unknown."""
    n = getattr(model, "context_length", None)
    if isinstance(n, int):
        return n
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def _stop_ids(eos_id: int | Sequence[int] | None) -> list[int]:
    if eos_id is None:
        return []
    ids = [eos_id] if isinstance(eos_id, int) else list(eos_id)
    if not all(isinstance(i, int) and i >= 0 for i in ids):
        raise ValueError(
            f"The 'eos_id' parameter of generate must be None, a token id >= 0 or a list of them. Got {eos_id!r}."
        )
    return ids


def _check_prompts(ids: Any, mask: Any) -> tuple[Tensor, Tensor]:
    """Validated (ids [B, P] long, mask [B, P] long); prompts must be left-padded and non-empty."""
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point() or ids.numel() == 0:
        got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(
            f"The 'prompt_ids' parameter of generate must be a non-empty integer tensor [B, P]. Got {got}."
        )
    if mask is None:
        mask = torch.ones_like(ids)
    if not isinstance(mask, Tensor) or mask.shape != ids.shape:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"The 'prompt_mask' parameter of generate must be shaped like prompt_ids {tuple(ids.shape)}. Got {got}."
        )
    mask = mask.long()
    if bool((mask[:, 1:] < mask[:, :-1]).any()) or bool((mask.sum(1) == 0).any()):
        raise ValueError(
            "The 'prompt_mask' parameter of generate must mark left-padded prompts (0 … 0 1 … 1, at least one 1 "
            "per row). Got a row with padding after a token or no token: left-pad the prompts "
            "(kdcore.data.prompts.pad_prompts does)."
        )
    return ids.long(), mask


def _check_context(model: nn.Module, prompt_len: int, cfg: GenerationConfig) -> None:
    n = context_length(model)
    if n is not None and prompt_len > n:
        raise ValueError(
            f"The 'prompt_ids' parameter of generate holds prompts of {prompt_len} tokens, longer than the model's "
            f"context of {n}. Shorten the prompts (or cut them from the left) to at most {n} tokens."
        )
    if n is not None and prompt_len + cfg.max_new_tokens > n:
        raise ValueError(
            f"The 'max_new_tokens' parameter of generate must leave prompt + completion within the model's context "
            f"of {n} tokens. Got {cfg.max_new_tokens} new tokens after prompts of {prompt_len}: use at most "
            f"{n - prompt_len}."
        )


def filter_logits(logits: Tensor, cfg: GenerationConfig) -> Tensor:
    """Sampling logits [B, V]: divided by the temperature, then top-k, then top-p (HF's warpers)."""
    logits = logits.float() / cfg.temperature
    if 0 < cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1)  # ascending, as HF's TopPLogitsWarper
        cum = sorted_logits.softmax(-1).cumsum(-1)  # [B, V]
        drop = cum <= 1 - cfg.top_p
        drop[..., -1] = False  # the most likely token always stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _pick(logits: Tensor, cfg: GenerationConfig, gen: torch.Generator | None) -> Tensor:
    """Next ids [B] from last-position logits [B, V]: argmax, or one seeded draw."""
    if not cfg.do_sample:
        return logits.argmax(-1)
    probs = filter_logits(logits, cfg).softmax(-1)  # [B, V]
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _suppress(logits: Tensor, stops: list[int], step: int, cfg: GenerationConfig) -> Tensor:
    if stops and step < cfg.min_new_tokens:
        logits = logits.clone()
        logits[:, stops] = float("-inf")
    return logits


def _loop(model: nn.Module, ids: Tensor, mask: Tensor, cfg: GenerationConfig, stops: list[int], pad: int) -> Tensor:
    """Token-by-token decoding [B, P] -> [B, P + N'] (N' ≤ N: stops when every row has stopped)."""
    gen = torch.Generator(device=ids.device).manual_seed(cfg.seed)
    step_fn: Any = getattr(model, "forward_cached", None)
    cached = callable(step_fn)
    positions = (mask.cumsum(1) - 1).clamp(min=0)  # [B, P]: left padding does not shift positions
    if cached:
        logits, past = step_fn(ids, positions, mask)  # [B, P, V]
    elif bool((mask == 0).any()):
        raise ValueError(
            f"{type(model).__name__} has no forward_cached(ids, positions, key_mask, past), so generate cannot "
            f"mask padding: give prompts of equal length (no padding) or add forward_cached to the model."
        )
    else:
        logits = model(ids)
    seq, key_mask, last = ids, mask, positions[:, -1:]
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    stop_t = torch.tensor(stops, dtype=torch.long, device=ids.device)
    for step in range(cfg.max_new_tokens):
        nxt = _pick(_suppress(logits[:, -1], stops, step, cfg), cfg, gen)  # [B]
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)  # [B, P + step + 1]
        done |= torch.isin(nxt, stop_t)
        if bool(done.all()) or step == cfg.max_new_tokens - 1:
            break
        key_mask, last = torch.cat([key_mask, torch.ones_like(last)], dim=1), last + 1
        if cached:
            logits, past = step_fn(nxt[:, None], last, key_mask, past)  # [B, 1, V]
        else:
            logits = model(seq)  # [B, L, V]: the whole sequence again (no cache)
    return seq


def _beam_step(
    scores: Tensor,
    logp: Tensor,
    K: int,
    stops: list[int],
    length: int,
    done: list[list[tuple[float, Tensor]]],
    seqs: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One beam step over rows: scores [B, K], logp [B, K, V] -> (new scores [B, K], source beam [B, K],
    tokens [B, K]). Candidates ending in a stop token join `done` (score / length); the K best others go on."""
    B, _, V = logp.shape
    top, idx = (scores[..., None] + logp).view(B, K * V).topk(2 * K, dim=-1)  # [B, 2K]
    new_scores = torch.full((B, K), float("-inf"))
    src = torch.zeros((B, K), dtype=torch.long)
    tok = torch.zeros((B, K), dtype=torch.long)
    for b in range(B):
        j = 0
        for score, i in zip(top[b].tolist(), idx[b].tolist()):
            beam, t = divmod(i, V)
            if t in stops:
                if len(done[b]) < K or score / length > min(h[0] for h in done[b]):
                    done[b].append((score / length, torch.cat([seqs[b * K + beam], torch.tensor([t])])))
                    done[b] = sorted(done[b], key=lambda h: -h[0])[:K]
            elif j < K:
                new_scores[b, j], src[b, j], tok[b, j] = score, beam, t
                j += 1
    return new_scores, src, tok


def _beam(model: nn.Module, ids: Tensor, mask: Tensor, cfg: GenerationConfig, stops: list[int], pad: int) -> Tensor:
    """Beam search with the model's incremental cache (length_penalty 1: score = Σ log p / length; a row
    stops when its K finished hypotheses beat the best running score per token, as HF's early_stopping=False)."""
    step_fn: Any = model.forward_cached
    B, P = ids.shape
    K = cfg.num_beams
    ids_k, mask_k = ids.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)  # [B·K, P]
    positions = (mask_k.cumsum(1) - 1).clamp(min=0)
    logits, past = step_fn(ids_k, positions, mask_k)
    scores = torch.full((B, K), float("-inf"))
    scores[:, 0] = 0.0  # one live beam at the start
    seqs = ids_k.new_zeros((B * K, 0)).cpu()
    done: list[list[tuple[float, Tensor]]] = [[] for _ in range(B)]
    last = positions[:, -1:]
    for step in range(cfg.max_new_tokens):
        logp = _suppress(logits[:, -1].float(), stops, step, cfg).log_softmax(-1).view(B, K, -1).cpu()
        scores, src, tok = _beam_step(scores, logp, K, stops, step + 1, done, seqs)
        flat = (torch.arange(B)[:, None] * K + src).view(-1)  # [B·K] the beams that go on
        seqs = torch.cat([seqs[flat], tok.view(-1, 1)], dim=1)
        best_running = scores.max(1).values / (step + 1)
        if all(len(d) == K and d[-1][0] >= float(r) for d, r in zip(done, best_running)):
            break
        if step == cfg.max_new_tokens - 1:
            break
        fl = flat.to(ids.device)
        past = None if past is None else [(k[fl], v[fl]) for k, v in past]  # reorder the cache
        mask_k, last = torch.cat([mask_k[fl], torch.ones_like(last)], dim=1), last[fl] + 1
        logits, past = step_fn(tok.view(-1, 1).to(ids.device), last, mask_k, past)
    return _best_beams(ids, seqs, scores, done, pad)


def _best_beams(ids: Tensor, seqs: Tensor, scores: Tensor, done: list[list[tuple[float, Tensor]]], pad: int) -> Tensor:
    """[B, P + N'] of each row's best hypothesis (running beams count, unfinished, when better or none finished)."""
    B, K = scores.shape
    best = []
    for b in range(B):
        hyps = list(done[b]) + [(float(scores[b, k]) / max(seqs.shape[1], 1), seqs[b * K + k]) for k in range(K)]
        best.append(max(hyps, key=lambda h: h[0])[1])
    width = max(len(h) for h in best)
    out = torch.full((B, width), pad, dtype=torch.long)
    for b, h in enumerate(best):
        out[b, : len(h)] = h
    return torch.cat([ids, out.to(ids.device)], dim=1)


def _hf_generate(
    model: nn.Module, ids: Tensor, mask: Tensor, cfg: GenerationConfig, stops: list[int], pad: int
) -> Tensor:
    """HF ``generate`` with use_cache=True under a config built from cfg only."""
    from transformers import GenerationConfig as HFGenerationConfig

    kwargs: dict[str, Any] = dict(
        max_new_tokens=cfg.max_new_tokens,
        min_new_tokens=cfg.min_new_tokens or None,
        do_sample=cfg.do_sample,
        num_beams=cfg.num_beams,
        eos_token_id=stops or None,
        pad_token_id=pad,
        use_cache=True,
    )
    if cfg.do_sample:
        kwargs.update(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    devices = [ids.device] if ids.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        hf_generate: Any = model.generate
        return hf_generate(input_ids=ids, attention_mask=mask, generation_config=HFGenerationConfig(**kwargs))


def _is_hf(model: nn.Module) -> bool:
    return callable(getattr(model, "generate", None)) and hasattr(model, "generation_config")


def _result(seq: Tensor, mask: Tensor, stops: list[int], pad: int, cfg: GenerationConfig) -> GenerationResult:
    """Masks of §15.0 from the generated block: a completion ends at (and includes) its first stop token."""
    P = mask.shape[1]
    new = seq[:, P:]  # [B, N']
    steps = torch.arange(new.shape[1], device=seq.device)
    is_stop = torch.isin(new, torch.tensor(stops, dtype=torch.long, device=seq.device))  # [B, N']
    has_stop = is_stop.any(1)
    first = torch.where(is_stop, steps, new.shape[1]).min(1).values if new.shape[1] else steps.new_zeros(len(seq))
    lengths = torch.where(has_stop, first + 1, torch.full_like(first, new.shape[1]))  # [B]
    kept = (steps[None] < lengths[:, None]).long()  # [B, N']
    seq = torch.cat([seq[:, :P], torch.where(kept.bool(), new, torch.full_like(new, pad))], dim=1)
    zeros = torch.zeros_like(mask)
    return GenerationResult(
        sequences=seq,
        attention_mask=torch.cat([mask, kept], dim=1),
        completion_mask=torch.cat([zeros, kept], dim=1),
        prompt_len=P,
        lengths=lengths,
        truncated=~has_stop,
        config=cfg,
    )


def generate(
    model: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor | None = None,
    *,
    config: GenerationConfig | None = None,
    eos_id: int | Sequence[int] | None = None,
    pad_id: int | None = None,
    **settings: Any,
) -> GenerationResult:
    """Generate completions of left-padded prompts [B, P] (mask: 1 on real tokens) with a KV cache.

    Args:
        model: a ModelAdapter (its ``.model`` runs) or an ``nn.Module``; never modified.
        config: decoding settings; keyword settings (max_new_tokens=, do_sample=, temperature=,
            top_k=, top_p=, num_beams=, min_new_tokens=, seed=) override its fields.
        eos_id: the stop token id, or a list of them (chat models); None: no stop token.
        pad_id: written after each kept completion (default: the first stop id, else 0).
    """
    cfg = replace(config or GenerationConfig(), **settings)
    cfg.check()
    module = getattr(model, "model", model)
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"The 'model' parameter of generate must be a ModelAdapter or nn.Module. Got {type(model).__name__}."
        )
    stops = _stop_ids(eos_id)
    pad = pad_id if pad_id is not None else (stops[0] if stops else 0)
    ids, mask = _check_prompts(prompt_ids, prompt_mask)
    _check_context(module, ids.shape[1], cfg)
    if cfg.num_beams > 1 and not _is_hf(module) and not callable(getattr(module, "forward_cached", None)):
        raise ValueError(
            f"The 'num_beams' parameter of generate must be 1 for {type(module).__name__} (beam search needs Hugging "
            f"Face generate or the model's forward_cached). Got {cfg.num_beams}: use greedy or sampled decoding."
        )
    device = next((p.device for p in module.parameters()), ids.device)
    ids, mask = ids.to(device), mask.to(device)
    from kdcore.adapters.base import eval_mode

    with eval_mode(module, no_grad=True):
        run = _hf_generate if _is_hf(module) else (_beam if cfg.num_beams > 1 else _loop)
        seq = run(module, ids, mask, cfg, stops, pad)
    return _result(seq, mask, stops, pad, cfg)


def greedy_completions(
    model: Any, prompts: list[list[int]], *, eos_id: int | None, pad_id: int, max_new_tokens: int, batch_size: int = 64
) -> list[list[int]]:
    """Greedy completions (stop token included when reached) of each prompt."""
    from kdcore.data.prompts import pad_prompts

    out: list[list[int]] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = pad_prompts(prompts[i : i + batch_size], pad_id)
        out += generate(model, ids, mask, max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id).completions()
    return out
