"""What an on-policy run (gkd, minillm, distillm; methods/15) needs checked before anything runs, so
that the CLI and the Distill form refuse it in plain words (called by `prepare_strategy` in prepare_run).

    onpolicy_problems(config, pair, terms, inputs)   # [] when it can run
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdcore.jobs.config import JobConfig, LossTerm

if TYPE_CHECKING:
    from torch import Tensor

    from kdcore.adapters.base import ModelAdapter
    from kdcore.pairs import Pair

ONPOLICY = ("gkd", "minillm", "distillm")


def onpolicy_problems(
    config: JobConfig, pair: Pair, terms: list[LossTerm], inputs: Tensor, prompt_len: Tensor | None = None
) -> list[str]:
    """Every reason the run cannot generate: a term of 'sum', tokenizers, context, lengths, the teacher cache.
    prompt_len: [N] prompt lengths when the data are prompt/completion records (else windows are cut)."""
    names = [t.name for t in terms]
    if len(terms) != 1 or config.objective == "sum":
        return [
            f"on-policy methods choose each step's sequences, so they run alone: make one of {names} the job's "
            "objective, not a term of 'sum'"
        ]
    term = terms[0]
    problems = generation_problems(
        term.name,
        term.params,
        student_vocab=pair.student.output_size,
        teacher_vocab=pair.teacher.output_size,
        context=model_context(pair.student),
        seq_len=int(inputs.shape[1]),
        longest_prompt=record_prompts(term.params, prompt_len),
    )
    if config.teacher_cache:
        problems.append(
            "on-policy sequences change every step, so the teacher cannot be cached: set teacher_cache false"
        )
    if term.name == "distillm" and term.params["capacity"] < config.batch_size:
        problems.append(
            f"params.capacity ({term.params['capacity']}) must hold at least one batch (batch_size {config.batch_size})"
        )
    return problems


def record_prompts(params: dict, prompt_len: Tensor | None) -> int | None:
    """The longest prompt when the run takes prompt records (prompt/completion data, prompts != 'window'), else None."""
    if prompt_len is None or params.get("prompts", "auto") == "window" or prompt_len.numel() == 0:
        return None
    return int(prompt_len.max())


def generation_problems(
    objective: str,
    params: dict,
    *,
    student_vocab: int,
    teacher_vocab: int,
    context: int | None,
    seq_len: int,
    longest_prompt: int | None = None,
) -> list[str]:
    """Why an on-policy run cannot generate on this pair and data (empty when it can). longest_prompt:
    the longest prompt record (prompt records), None for prompts cut as windows of `prompt_tokens`."""
    p: list[str] = []
    if student_vocab != teacher_vocab:
        p.append(
            f"'{objective}' samples with the student and scores the samples with the teacher, so both need one "
            f"tokenizer; the student has {student_vocab} tokens, the teacher {teacher_vocab}: use objective 'token' "
            "with kind 'uld' (the cross-tokenizer divergence) instead"
        )
    n, prompt = params["max_new_tokens"], params["prompt_tokens"]
    if not isinstance(n, int) or n <= 0:
        p.append(f"params.max_new_tokens must be an integer ≥ 1; got {n!r}")
        return p
    if longest_prompt is not None:
        if context is not None and longest_prompt >= context:  # else max_new_tokens is capped to fit (the job)
            p.append(
                f"the longest prompt record has {longest_prompt} tokens, the model's whole context is {context}: "
                "no room to generate; shorten the prompts"
            )
        return p
    if context is not None and prompt + n > context:
        what = "the prompt alone is" if prompt >= context else "prompt + completion is"
        p.append(
            f"{what} longer than the model's context of {context} tokens (prompt_tokens={prompt}, "
            f"max_new_tokens={n}): lower them to prompt_tokens + max_new_tokens ≤ {context}"
        )
    if prompt + 1 > seq_len:
        p.append(
            f"params.prompt_tokens={prompt} leaves no data completion in training sequences of {seq_len} tokens: "
            f"use at most {seq_len - 1}"
        )
    return p


def model_context(adapter: ModelAdapter) -> int | None:
    """The longest input the model takes, None when unknown."""
    from kdcore.generation import context_length

    n = context_length(adapter.model)
    cfg = getattr(adapter.model, "cfg", None)
    return n if n is not None else getattr(cfg, "seq_len", None)
