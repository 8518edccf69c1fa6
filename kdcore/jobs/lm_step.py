"""The causal-LM token step without full logits: the job's ``token`` objective (and its CE) computed
from both models' final hidden states and output heads, chunk by chunk (``kdcore.lm_chunked``).

``chunked_problem`` says why a job cannot take this path (it then uses the full logits);
``chunked_token_loss`` gives the same (loss, components) as ``objectives.compute_loss`` would on the
full logits: ``{kind: divergence, "ce": CE}`` with loss = weight · divergence + ce_weight · CE.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.adapters.base import ModelAdapter
from kdcore.jobs.config import LossTerm
from kdcore.lm_chunked import hidden_token_losses


def chunked_problem(
    task: str, terms: list[LossTerm], *, teacher_cache: bool, student: ModelAdapter, teacher: ModelAdapter
) -> str | None:
    """Why the job's loss cannot be computed chunk by chunk (None when it can)."""
    if task != "causal_lm":
        return f"the task is {task}, not a causal LM"
    if len(terms) != 1 or terms[0].name != "token":
        return f"the objective is {[t.name for t in terms]}, not one 'token' divergence term"
    if teacher_cache:
        return "the teacher's outputs come from the teacher cache (logits), not from the teacher"
    return student.hidden_head_problem() or teacher.hidden_head_problem()


def chunked_token_loss(
    student: ModelAdapter,
    teacher: ModelAdapter,
    x: Tensor,
    y: Tensor,
    term: LossTerm,
    ce_weight: float,
    chunk_rows: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss, {kind: divergence, "ce": CE}) of one batch x [B, L] with next-token labels y [B, L]."""
    p = term.params
    with torch.no_grad():
        t_hidden, t_weight, t_bias = teacher.hidden_and_head(x)  # [B, L, Ht], [V, Ht], [V] | None
    s_hidden, s_weight, s_bias = student.hidden_and_head(x)  # [B, L, Hs], [V, Hs], [V] | None
    loss, div, ce = hidden_token_losses(
        s_hidden,
        (s_weight, s_bias),
        t_hidden,
        (t_weight, t_bias),
        p["kind"],
        labels=y.to(s_hidden.device),
        div_weight=term.weight,
        ce_weight=ce_weight,
        temperature=p["temperature"],
        beta=p["beta"],
        alpha=p["alpha"],
        mu=p["mu"],
        chunk_rows=chunk_rows,
    )
    comps = {p["kind"]: div}
    if ce_weight > 0:
        comps["ce"] = ce
    return loss, comps


def probe_head_matches(student: ModelAdapter, teacher: ModelAdapter, x: Tensor) -> bool:
    """Whether head(hidden) reproduces each model's logits on a small probe x [1, l] (eval mode, no grad):
    a model that changes its logits after the head falls back to the full logits."""
    from kdcore.adapters.base import eval_mode

    for adapter in (student, teacher):
        with eval_mode(adapter.model, no_grad=True):
            hidden, weight, bias = adapter.hidden_and_head(x)
            logits = adapter.logits(x)
        ref = torch.nn.functional.linear(hidden, weight, bias)
        if ref.shape != logits.shape or not torch.allclose(ref.float(), logits.float(), rtol=1e-4, atol=1e-4):
            return False
    return True
