"""Generated samples of teacher and student for one prompt, each token scored by both models
(methods/15 views: "generated samples with per-token divergence colouring").

    res = sample_divergences(student, teacher, prompt_ids, eos_id=2, pad_id=0, max_new_tokens=24)
    res.samples["student"].tokens       # the student's own continuation (stop token included)
    res.samples["student"].divergence   # [C] D(p_T ‖ p_S) at the position that predicted each token

Each model generates its own continuation of the prompt (kdcore.generation.generate: greedy by
default; sampling settings of §15 as options, seeded). Then both models run teacher-forced on the
identical ids (prompt ⧺ that continuation, §15.0) and, for completion token k (column P + k), the
divergence is taken between the two next-token distributions at column P + k − 1: the position that
predicted token k. `divergence="fkl"` is KL(p_T ‖ q_S) = Σ_v p(v) (log p(v) − log q(v)), "rkl" is
KL(q_S ‖ p_T), both in nats, at temperature T (softmax(z / T), T = 1 by default; not multiplied by T²).
Every value is computed in float64. Also returned per token: p_T and q_S of the generated token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kdcore.generation import GenerationConfig, generate

DIVERGENCES = ("fkl", "rkl")  # KL(p_T ‖ q_S), KL(q_S ‖ p_T)


@dataclass
class ScoredSample:
    """One model's continuation, every token scored by both models."""

    tokens: list[int]  # [C] generated ids (the stop token included when reached)
    divergence: np.ndarray  # [C] float64, nats: the divergence at the position that predicted each token
    p_teacher: np.ndarray  # [C] float64: the teacher's probability of the generated token
    p_student: np.ndarray  # [C] float64: the student's probability of the generated token
    truncated: bool  # reached max_new_tokens without a stop token


@dataclass
class SampleDivergences:
    """Both models' continuations of one prompt (keys "teacher", "student")."""

    prompt: list[int]  # [P] the prompt's ids
    samples: dict[str, ScoredSample]  # who generated -> its scored continuation
    divergence: str  # "fkl" | "rkl"
    temperature: float  # T of the scored distributions
    config: GenerationConfig  # the decoding settings both models used
    summary: dict[str, float] = field(default_factory=dict)  # mean divergence per sample ("<who>_mean")


def _check(divergence: str, temperature: float, prompt: Sequence[int]) -> list[int]:
    if divergence not in DIVERGENCES:
        raise ValueError(
            f"The 'divergence' parameter of sample_divergences must be one of {list(DIVERGENCES)}. Got {divergence!r}."
        )
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(
            f"The 'temperature' parameter of sample_divergences must be a float > 0. Got {temperature!r} instead."
        )
    ids = [int(i) for i in prompt]
    if not ids:
        raise ValueError("The 'prompt_ids' parameter of sample_divergences must hold at least one token. Got none.")
    return ids


def token_divergences(
    student_logits: Tensor, teacher_logits: Tensor, tokens: Tensor, divergence: str = "fkl", temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position (logits [C, V], tokens [C]): (divergence, p_T(token), q_S(token)), float64 [C] each."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student and teacher logits must have one shape (one vocabulary). Got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}: generated samples are compared only under one tokenizer."
        )
    log_q = torch.log_softmax(student_logits.double() / temperature, -1)  # [C, V]
    log_p = torch.log_softmax(teacher_logits.double() / temperature, -1)  # [C, V]
    a, b = (log_p, log_q) if divergence == "fkl" else (log_q, log_p)
    d = (a.exp() * (a - b)).sum(-1)  # [C]
    pick = tokens.long().view(-1, 1)
    return (
        d.cpu().numpy(),
        log_p.gather(-1, pick).exp().view(-1).cpu().numpy(),
        log_q.gather(-1, pick).exp().view(-1).cpu().numpy(),
    )


def _logits(model: Any, ids: Tensor) -> Tensor:
    """[L, V] next-token logits of one sequence [L], teacher-forced, eval mode, no grad."""
    from kdcore.adapters.base import _unwrap_logits, eval_mode

    module = getattr(model, "model", model)
    device = next((p.device for p in module.parameters()), ids.device)
    with eval_mode(module, no_grad=True):
        return _unwrap_logits(module(ids.view(1, -1).to(device)))[0].float().cpu()


def _score(student: Any, teacher: Any, prompt: list[int], completion: list[int], divergence: str, T: float) -> Any:
    """The completion's tokens scored at the positions that predicted them (see the module doc)."""
    P, C = len(prompt), len(completion)
    ids = torch.tensor(prompt + completion, dtype=torch.long)  # [P + C]
    where = slice(P - 1, P + C - 1)  # column P + k − 1 predicts completion token k
    zs, zt = _logits(student, ids)[where], _logits(teacher, ids)[where]  # [C, V] each
    return token_divergences(zs, zt, ids[P:], divergence, T)


def sample_divergences(
    student: Any,
    teacher: Any,
    prompt_ids: Sequence[int],
    *,
    eos_id: int | Sequence[int] | None,
    pad_id: int | None = None,
    config: GenerationConfig | None = None,
    divergence: str = "fkl",
    temperature: float = 1.0,
    sample_temperature: float | None = None,
    **settings: Any,
) -> SampleDivergences:
    """Teacher and student continue `prompt_ids` (config / keyword settings as kdcore.generation.generate:
    greedy unless do_sample=True, seeded; sample_temperature = τ_s, apart from the divergence's T);
    each continuation is scored by both models (module doc)."""
    prompt = _check(divergence, temperature, prompt_ids)
    vs, vt = getattr(student, "output_size", None), getattr(teacher, "output_size", None)
    if vs is not None and vt is not None and vs != vt:
        raise ValueError(
            f"sample_divergences scores each model's tokens with the other, so both need one tokenizer; the student "
            f"has {vs} tokens, the teacher {vt}. Compare such pairs with ULD (the cross-tokenizer divergence)."
        )
    if sample_temperature is not None:
        settings["temperature"] = sample_temperature
    cfg = GenerationConfig(**{**(config or GenerationConfig()).__dict__, **settings})
    cfg.check("sample_divergences")
    ids = torch.tensor([prompt], dtype=torch.long)  # [1, P]
    samples = {}
    for who, model in (("teacher", teacher), ("student", student)):
        res = generate(model, ids, None, config=cfg, eos_id=eos_id, pad_id=pad_id)
        tokens = res.completions()[0]
        if not tokens:
            d = pt = ps = np.zeros(0)
        else:
            d, pt, ps = _score(student, teacher, prompt, tokens, divergence, float(temperature))
        samples[who] = ScoredSample(tokens, d, pt, ps, bool(res.truncated[0]))
    summary = {f"{w}_mean": float(s.divergence.mean()) if len(s.tokens) else float("nan") for w, s in samples.items()}
    return SampleDivergences(prompt, samples, divergence, float(temperature), cfg, summary)
