"""The LM scorecard (spec §15.6): "the student keeps X % of the teacher's exact match, has Y % fewer
parameters, generates Z× faster", each number with how it was measured.

    card = lm_scorecard(teacher, student, held_out, decode=tokenizer_decode)
    print(card.text())
    card = run_scorecard(store, run_id)     # a run's student against its pair's teacher

Quality: greedy completions of held-out prompts (stop at EOS, completion only, special tokens
skipped), exact match after normalisation, X = 100·EM_s/EM_t with a paired bootstrap interval
(1000 resamples, seed 0); token-weighted perplexity on the reference completions with the
interval of PPL_s/PPL_t. Size: unique parameter elements (tied embeddings once). Speed: end-to-end
generation medians (kdcore.eval.speed), Z = t_e2e(teacher)/t_e2e(student) at batch 1.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdcore.eval.quality import exact_match_scores, paired_bootstrap, perplexity_from, ratio_of_means, sequence_nll
from kdcore.eval.speed import SpeedConfig, speed_tables
from kdcore.generation import greedy_completions


def parameter_counts(model: Any) -> dict[str, int]:
    """unique (tied embeddings once, buffers excluded), non_embedding (without input/output
    embedding matrices) and bytes (unique parameters in their dtype)."""
    module = getattr(model, "model", model)
    seen: dict[int, torch.nn.Parameter] = {}
    for p in module.parameters():
        seen.setdefault(id(p), p)
    emb = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        m = getattr(module, getter, lambda: None)()
        if m is not None and getattr(m, "weight", None) is not None:
            emb.add(id(m.weight))
    for name in ("tok", "unembed"):  # tinylang transformers' embedding and unembedding
        m = getattr(module, name, None)
        if m is not None:
            emb.add(id(m.weight))
    unique = sum(p.numel() for p in seen.values())
    return {
        "unique": unique,
        "non_embedding": unique - sum(p.numel() for k, p in seen.items() if k in emb),
        "bytes": sum(p.numel() * p.element_size() for p in seen.values()),
    }


@dataclass
class LMScorecard:
    """The three numbers, their parts and how they were measured."""

    em: dict[str, float]  # teacher/student exact match (%)
    pct_of_teacher: float  # X = 100·EM_s/EM_t
    pct_ci: tuple[float, float]  # 95 % paired bootstrap interval of X
    ppl: dict[str, float]  # teacher/student token-weighted perplexity
    ppl_ratio_ci: tuple[float, float]  # interval of PPL_s/PPL_t
    params: dict[str, dict[str, int]]  # teacher/student: unique, non_embedding, bytes
    param_reduction: float  # Y = 100·(1 − N_s/N_t)
    speed: dict[str, pd.DataFrame]  # teacher/student: one row per batch size
    speedups: dict[str, float]  # e2e_b1 (Z), prefill, decode, e2e_bN
    setup: dict[str, Any] = field(default_factory=dict)  # prompts, n, P, repeats, device, dtype, versions

    def text(self) -> str:
        s = self.setup
        lo, hi = self.pct_ci
        return "\n".join(
            [
                f"student keeps {self.pct_of_teacher:.1f} % of the teacher's exact match, has {self.param_reduction:.1f} % "
                f"fewer parameters, generates {self.speedups['e2e_b1']:.2f}× faster",
                f"- exact match: {self.em['student']:.1f} % vs {self.em['teacher']:.1f} % (95 % paired bootstrap "
                f"{lo:.1f}–{hi:.1f} % of the teacher's), greedy, {s['n_prompts']} held-out prompts of {s['prompt_set']}, "
                f"at most {s['max_new_tokens']} new tokens, stop at EOS, normalised (lower case, no punctuation, one space)",
                f"- perplexity on the reference completions (token-weighted): student {self.ppl['student']:.3g}, teacher "
                f"{self.ppl['teacher']:.3g} (ratio 95 % interval {self.ppl_ratio_ci[0]:.3g}–{self.ppl_ratio_ci[1]:.3g})",
                f"- parameters: {self.params['student']['unique']:,} vs {self.params['teacher']['unique']:,} unique "
                f"(tied embeddings once; non-embedding {self.params['student']['non_embedding']:,} vs "
                f"{self.params['teacher']['non_embedding']:,})",
                f"- speed: end-to-end generation medians at batch 1, prompts of {s['prompt_tokens']} tokens, exactly "
                f"{s['new_tokens']} new tokens, greedy with KV cache, {s['repeats']} interleaved runs after {s['warmup']} "
                f"warm-ups on {s['device']} ({s['dtype']}); prefill {self.speedups['prefill']:.2f}×, decode "
                f"{self.speedups['decode']:.2f}×, end-to-end at batch {s['batch_n']} {self.speedups['e2e_bN']:.2f}×",
            ]
        )


def _ppl_ratio(ns: np.ndarray, nt: np.ndarray, tokens: np.ndarray) -> Callable[[np.ndarray, np.ndarray], float]:
    """stat over resampled item indices (passed as s, t = index arrays): PPL_s / PPL_t."""

    def stat(i: np.ndarray, _: np.ndarray) -> float:
        idx = i.astype(int)
        return perplexity_from(ns[idx], tokens[idx]) / perplexity_from(nt[idx], tokens[idx])

    return stat


def compare(teacher_report: dict, student_report: dict, *, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """X with its interval, Y, and the speed-ups from two model reports (see `model_report`)."""
    for key in ("setup", "prompt_hash"):
        if teacher_report[key] != student_report[key]:
            raise ValueError(
                f"compare needs reports measured alike; they differ in {key}: {teacher_report[key]} vs {student_report[key]}."
            )
    t_em, s_em = teacher_report["em_scores"], student_report["em_scores"]
    if float(np.mean(t_em)) == 0:
        raise ValueError(
            "The teacher's exact match is 0 on these prompts, so 'X % of the teacher' is undefined: use prompts the "
            "teacher answers, or a larger max_new_tokens."
        )
    ts, ss = teacher_report["speed"], student_report["speed"]
    b1, bn = ts.iloc[0], ts.iloc[-1]
    s1, sn = ss.iloc[0], ss.iloc[-1]
    return {
        "pct_of_teacher": ratio_of_means(s_em, t_em),
        "pct_ci": paired_bootstrap(s_em, t_em, ratio_of_means, n=n_bootstrap, seed=seed),
        "param_reduction": 100.0 * (1 - student_report["params"]["unique"] / teacher_report["params"]["unique"]),
        "speedup_e2e_b1": b1["e2e_s"] / s1["e2e_s"],
        "speedup_prefill": b1["ttft_s"] / s1["ttft_s"],
        "speedup_decode": b1["tpot_s"] / s1["tpot_s"],
        "speedup_e2e_bN": bn["e2e_s"] / sn["e2e_s"],
    }


def _environment(model: Any, cfg: SpeedConfig) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("transformers")  # read from metadata: importing transformers is slow
    except PackageNotFoundError:
        tf_version = "not installed"
    module = getattr(model, "model", model)
    p = next(module.parameters())
    return {
        "device": str(p.device),
        "dtype": str(p.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": tf_version,
        "python": platform.python_version(),
        "attention": str(getattr(getattr(module, "config", None), "_attn_implementation", "eager")),
        "prompt_tokens": cfg.prompt_tokens,
        "new_tokens": cfg.new_tokens,
        "batch_sizes": list(cfg.batch_sizes),
    }


def model_report(
    model: Any,
    held_out: Any,
    *,
    decode: Callable[[list[int]], str],
    max_new_tokens: int,
    speed: pd.DataFrame,
    cfg: SpeedConfig,
) -> dict:
    """Per-prompt EM scores, per-sequence NLL and tokens, parameter counts, speed and environment."""
    from kdcore.data.prompts import sft_split

    refs = [decode(c) for c in held_out.completions]
    preds = [
        decode(c)
        for c in greedy_completions(
            model, held_out.prompts, eos_id=held_out.eos_id, pad_id=held_out.pad_id, max_new_tokens=max_new_tokens
        )
    ]
    rows = sft_split(held_out.prompts, held_out.completions, held_out.pad_id)
    nll, tokens = sequence_nll(model, rows.inputs, rows.targets)
    env = _environment(model, cfg)
    return {
        "em_scores": exact_match_scores(preds, refs),
        "nll": nll,
        "tokens": tokens,
        "params": parameter_counts(model),
        "speed": speed,
        "setup": {k: env[k] for k in ("device", "dtype", "prompt_tokens", "new_tokens", "batch_sizes")},
        "prompt_hash": hash(tuple(map(tuple, held_out.prompts))),
        "environment": env,
        "predictions": preds,
    }


def lm_scorecard(
    teacher: Any,
    student: Any,
    held_out: Any,
    *,
    decode: Callable[[list[int]], str],
    max_new_tokens: int = 128,
    speed: SpeedConfig | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> LMScorecard:
    """The scorecard of a pair on held-out prompts (a kdcore.data.prompts.PromptSet with completions)."""
    cfg = speed or SpeedConfig()
    if not held_out.prompts or held_out.completions is None:
        raise ValueError("lm_scorecard needs held-out prompts with reference completions. Got none.")
    tables = speed_tables({"teacher": teacher, "student": student}, cfg)
    rep = {
        k: model_report(m, held_out, decode=decode, max_new_tokens=max_new_tokens, speed=tables[k], cfg=cfg)
        for k, m in (("teacher", teacher), ("student", student))
    }
    c = compare(rep["teacher"], rep["student"], n_bootstrap=n_bootstrap, seed=seed)
    idx = np.arange(len(held_out.prompts), dtype=np.float64)
    stat = _ppl_ratio(rep["student"]["nll"], rep["teacher"]["nll"], rep["teacher"]["tokens"])
    env = rep["teacher"]["environment"]
    return LMScorecard(
        em={k: float(r["em_scores"].mean() * 100) for k, r in rep.items()},
        pct_of_teacher=c["pct_of_teacher"],
        pct_ci=c["pct_ci"],
        ppl={k: perplexity_from(r["nll"], r["tokens"]) for k, r in rep.items()},
        ppl_ratio_ci=paired_bootstrap(idx, idx, stat, n=n_bootstrap, seed=seed),
        params={k: r["params"] for k, r in rep.items()},
        param_reduction=c["param_reduction"],
        speed=tables,
        speedups={k.removeprefix("speedup_"): v for k, v in c.items() if k.startswith("speedup_")},
        setup=dict(
            env,
            n_prompts=len(held_out.prompts),
            prompt_set=held_out.name or "the held-out set",
            max_new_tokens=max_new_tokens,
            repeats=cfg.repeats,
            warmup=cfg.warmup,
            batch_n=cfg.batch_sizes[-1],
        ),
    )


def decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """ids -> text with special tokens skipped (HF tokenizers; tinylang drops <s> and <c>)."""
    specials = set(getattr(tokenizer, "special_ids", ()))
    if hasattr(tokenizer, "eos_token_id"):
        return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True))
    return lambda ids: str(tokenizer.decode([i for i in ids if i not in specials]))


def _speed_for_context(n_ctx: int | None, cfg: SpeedConfig) -> SpeedConfig:
    """The spec's P = n = 128, scaled down (P = n_ctx/4, n = n_ctx/2) when the context is shorter."""
    if n_ctx is None or cfg.prompt_tokens + cfg.new_tokens <= n_ctx:
        return cfg
    return SpeedConfig(cfg.batch_sizes, max(1, n_ctx // 4), max(2, n_ctx // 2), cfg.warmup, cfg.repeats, cfg.seed)


def held_out_prompts(dataset: Any, n_prompts: int = 200) -> Any:
    """The held-out prompts of a causal-LM dataset: tinylang's copy test split, or the test split of a
    prompt/completion dataset; raises for data without reference completions."""
    from kdcore.data.prompts import PromptSet, split_prompts, tinylang_copy_prompts

    if dataset is None or dataset.task != "causal_lm":
        raise ValueError("The LM scorecard needs a causal LM pair with a dataset.")
    if dataset.name == "tinylang":
        return tinylang_copy_prompts("test", n=n_prompts)
    info = dataset.load_report or {}
    if "eos_id" not in info:
        raise ValueError(
            f"The data {dataset.name!r} has no prompts with reference completions: the scorecard's exact match needs "
            f"a prompt/completion file (JSONL or CSV with 'prompt' and 'completion')."
        )
    p, c = split_prompts(dataset.split("test"))
    return PromptSet(p[:n_prompts], c[:n_prompts], info["eos_id"], int(info["pad_id"]), f"{dataset.name} (test)")


def pair_scorecard(
    teacher: Any,
    student: Any,
    dataset: Any,
    *,
    n_prompts: int = 200,
    max_new_tokens: int = 128,
    speed: SpeedConfig | None = None,
) -> LMScorecard:
    """lm_scorecard on the dataset's held-out prompts, with P, n and max_new_tokens fitted to the context."""
    from kdcore.generation import context_length

    held = held_out_prompts(dataset, n_prompts)
    n_ctx = context_length(getattr(teacher, "model", teacher))
    longest = max(len(x) for x in held.prompts)
    max_new = max_new_tokens if n_ctx is None else max(1, min(max_new_tokens, n_ctx - longest))
    cfg = _speed_for_context(n_ctx, speed or SpeedConfig())
    return lm_scorecard(teacher, student, held, decode=decoder(dataset.tokenizer), max_new_tokens=max_new, speed=cfg)


def run_scorecard(
    store: Any, run_id: str, *, n_prompts: int = 200, max_new_tokens: int = 128, speed: SpeedConfig | None = None
) -> LMScorecard:
    """A run's final student against its pair's teacher on the held-out (test) prompts of its data."""
    from kdcore.jobs.config import JobConfig
    from kdcore.jobs.pair_source import pair_for_config, student_for_run

    run = store.get_run(run_id)
    cfg = JobConfig.from_dict(dict(run["config"]))
    pair = pair_for_config(cfg)  # a registered pair, or a user's own directories or factories
    held_out_prompts(pair.dataset, 1)  # refuses data without completions before the student loads
    student = student_for_run(cfg, store.load_student(run_id))
    card = pair_scorecard(
        pair.teacher, student, pair.dataset, n_prompts=n_prompts, max_new_tokens=max_new_tokens, speed=speed
    )
    card.setup["run_id"] = run_id
    return card
