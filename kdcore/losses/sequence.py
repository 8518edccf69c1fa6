"""Sequence-level KD (spec §15.1) and hybrid token + sentence KD (§15.2, provisional) for causal LMs.

Labels follow HF: ``labels`` [B, L] are the input ids with −100 on prompt and padding; the losses
use ``logits[:, :-1]`` against ``labels[:, 1:]`` (shifted), so position j predicts token j + 1 and the
kept positions K are those whose shifted label is not −100. Student first, teacher second;
p = teacher, q = student; token values are not multiplied by T².

    seqkd_loss(s, t, labels, alpha=0.0)   # (1 − α)·NLL(ŷ) + α·mean_K[−Σ_v p log q]   (Kim & Rush 2016)
    hybrid_loss(s_data, t_data, labels_data, s_seq, labels_seq, gate="fixed", g=0.5)
        # (1/B) Σ_i [g_i·L_tok,i + (1 − g_i)·L_sent,i]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore.losses.sequence_masks import IGNORE_INDEX, shifted_labels

GATES = ("fixed", "learned", "input")
TOKEN_TERMS = ("kl", "ce")
TOKEN_TARGETS = ("data", "teacher")
REDUCTIONS = ("sequence", "token")


def labels_from_targets(targets: Tensor) -> Tensor:
    """HF labels [B, L] from next-token targets [B, L] (the runner's format: targets[j] = token j + 1)."""
    out = torch.full_like(targets, IGNORE_INDEX)
    out[:, 1:] = targets[:, :-1]
    return out


def _bad(name: str, where: str, expected: str, got: Any) -> ValueError:
    return ValueError(f"The '{name}' parameter of {where} must be {expected}. Got {got!r} instead.")


def _wide(x: Tensor) -> Tensor:
    """float32, or float64 kept (computation is never narrower than float32)."""
    return x if x.dtype == torch.float64 else x.float()


def _shifted(logits: Tensor, labels: Tensor, where: str, name: str = "labels") -> tuple[Tensor, Tensor, Tensor]:
    """(logits [B, L−1, V] float, labels [B, L−1], kept mask [B, L−1]) after the one-step shift."""
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"The '{name}' parameter of {where} must be shaped like the logits' first two dimensions "
            f"{tuple(logits.shape[:2])} (logits [B, L, V]). Got {tuple(labels.shape)} instead."
        )
    lab, kept = shifted_labels(labels, where=where, name=name)
    return _wide(logits[:, :-1]), lab, kept


def _check_vocab(student: Tensor, teacher: Tensor, where: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"The 'teacher_logits' of {where} must be shaped like the student's {tuple(student.shape)} (the same "
            f"tokens and vocabulary, METHODS §6). Got {tuple(teacher.shape)}: use a pair that shares a tokenizer."
        )


def token_nll(logits: Tensor, labels: Tensor, *, where: str = "token_nll") -> Tensor:
    """Per-position −log q_j(label_{j+1}) [B, L−1], 0 where not kept."""
    s, lab, kept = _shifted(logits, labels, where)
    nll = -s.log_softmax(-1).gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [B, L−1]
    return torch.where(kept, nll, torch.zeros_like(nll))


def seqkd_components(
    student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor, *, temperature: float = 1.0
) -> dict[str, Tensor]:
    """Pooled parts over the kept positions K: "nll" = mean −log q(ŷ_{j+1}); with teacher logits also
    "word_ce" = mean −Σ_v p log q, "word_fkl" = mean KL(p‖q) and "teacher_entropy" = mean H(p) at T."""
    where = "seqkd_loss"
    if temperature <= 0:
        raise _bad("temperature", where, "a float > 0", temperature)
    s, _, kept = _shifted(student_logits, labels, where)
    n = kept.sum()
    out = {"nll": token_nll(student_logits, labels, where=where).sum() / n}
    if teacher_logits is not None:
        _check_vocab(student_logits, teacher_logits, where)
        log_q = (s / temperature).log_softmax(-1)  # [B, L−1, V]
        log_p = (_wide(teacher_logits[:, :-1]) / temperature).log_softmax(-1)
        ce = -(log_p.exp() * log_q).sum(-1)  # [B, L−1]
        h = -(log_p.exp() * log_p).sum(-1)
        out["word_ce"] = ce[kept].sum() / n
        out["teacher_entropy"] = h[kept].sum() / n
        out["word_fkl"] = out["word_ce"] - out["teacher_entropy"]
    return out


def seqkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    labels: Tensor,
    *,
    alpha: float = 0.0,
    temperature: float = 1.0,
) -> Tensor:
    """Seq-KD (α = 0: the masked NLL of the teacher's completions ŷ) or Seq-KD + Word-KD:
    (1 − α)·NLL(ŷ) + α·mean_K[−Σ_v p_j(v) log q_j(v)] (§15.1). teacher_logits may be None when α = 0."""
    if not 0.0 <= alpha <= 1.0:
        raise _bad("alpha", "seqkd_loss", "a float in [0, 1]", alpha)
    if alpha > 0 and teacher_logits is None:
        raise _bad("teacher_logits", "seqkd_loss", "the teacher's logits when alpha > 0", None)
    parts = seqkd_components(student_logits, teacher_logits if alpha > 0 else None, labels, temperature=temperature)
    return parts["nll"] if alpha == 0 else (1 - alpha) * parts["nll"] + alpha * parts["word_ce"]


def _per_sequence(values: Tensor, kept: Tensor, reduction: str, where: str, name: str) -> Tensor:
    """[B] per-sequence means over kept positions ("sequence") or one pooled value repeated ("token")."""
    counts = kept.sum(1)  # [B]
    if reduction == "token":
        return (values[kept].sum() / counts.sum()).expand(values.shape[0])
    if bool((counts == 0).any()):
        i = int((counts == 0).nonzero()[0])
        raise ValueError(
            f"The '{name}' parameter of {where} has no kept position in sequence {i}: with reduction='sequence' "
            f"every sequence needs a completion token (or use reduction='token')."
        )
    return torch.where(kept, values, torch.zeros_like(values)).sum(1) / counts


def hybrid_token_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    token_term: str,
    temperature: float,
    reduction: str,
) -> Tensor:
    """L_tok,i [B]: mean over K_i of KL(p‖q) (token_term "kl") or −Σ p log q ("ce"), at T."""
    where = "hybrid_loss"
    _check_vocab(student_logits, teacher_logits, where)
    s, _, kept = _shifted(student_logits, labels, where, "labels_data")
    log_q = (s / temperature).log_softmax(-1)
    log_p = (_wide(teacher_logits[:, :-1]) / temperature).log_softmax(-1)
    p = log_p.exp()
    per = (p * (log_p - log_q)).sum(-1) if token_term == "kl" else -(p * log_q).sum(-1)  # [B, L−1]
    return _per_sequence(per, kept, reduction, where, "labels_data")


def hybrid_gate(gate: str, g: float, gate_param: Any, features: Tensor | None, batch: int) -> Tensor:
    """g_i [B]: fixed g; learned σ(θ) (gate_param = θ, a scalar tensor); input σ(w·h̄_i + b)
    (gate_param = (w [H], b), features = h̄ [B, H], detached)."""
    where = "hybrid_loss"
    if gate == "fixed":
        return torch.full((batch,), float(g))
    if gate_param is None:
        raise _bad("gate_param", where, f"the gate's parameters when gate={gate!r}", None)
    if gate == "learned":
        return torch.sigmoid(torch.as_tensor(gate_param).reshape(())).expand(batch)
    if features is None or features.dim() != 2 or features.shape[0] != batch:
        got = None if features is None else tuple(features.shape)
        raise _bad("features", where, f"the student's prompt-mean hidden states [{batch}, H] when gate='input'", got)
    w, b = gate_param
    return torch.sigmoid(_wide(features.detach()) @ _wide(w) + b)  # [B]


def _check_hybrid(gate: str, g: float, token_term: str, token_targets: str, temperature: float, reduction: str) -> None:
    where = "hybrid_loss"
    for name, value, allowed in (
        ("gate", gate, GATES),
        ("token_term", token_term, TOKEN_TERMS),
        ("token_targets", token_targets, TOKEN_TARGETS),
        ("reduction", reduction, REDUCTIONS),
    ):
        if value not in allowed:
            raise _bad(name, where, f"one of {allowed}", value)
    if not 0.0 <= g <= 1.0:
        raise _bad("g", where, "a float in [0, 1]", g)
    if temperature <= 0:
        raise _bad("temperature", where, "a float > 0", temperature)


def hybrid_loss(
    student_logits_data: Tensor,
    teacher_logits_data: Tensor,
    labels_data: Tensor,
    student_logits_seq: Tensor,
    labels_seq: Tensor,
    *,
    gate: str = "fixed",
    g: float = 0.5,
    gate_param: Any = None,
    features: Tensor | None = None,
    token_term: str = "kl",
    token_targets: str = "data",
    temperature: float = 1.0,
    reduction: str = "sequence",
) -> dict[str, Tensor]:
    """L_hyb = (1/B) Σ_i [g_i·L_tok,i + (1 − g_i)·L_sent,i] (§15.2, provisional: the gate's form is the
    library's). The token term runs on the "data" tensors (the data completion y by default; pass
    the teacher's ŷ there for token_targets="teacher"), the sentence term on ŷ. Returns "loss",
    "token_loss" and "sentence_loss" (means over sequences), "g" (mean) and "g_seq" [B]."""
    _check_hybrid(gate, g, token_term, token_targets, temperature, reduction)
    B = student_logits_data.shape[0]
    if labels_seq.shape[0] != B or labels_data.shape[0] != B or student_logits_seq.shape[0] != B:
        raise ValueError(
            f"hybrid_loss needs the same batch size for both terms. Got {B} data rows and "
            f"{labels_seq.shape[0]} sequence rows: pair each prompt's data completion with its teacher completion."
        )
    tok = hybrid_token_terms(
        student_logits_data,
        teacher_logits_data,
        labels_data,
        token_term=token_term,
        temperature=temperature,
        reduction=reduction,
    )
    _, _, kept = _shifted(student_logits_seq, labels_seq, "hybrid_loss", "labels_seq")
    sent = _per_sequence(
        token_nll(student_logits_seq, labels_seq, where="hybrid_loss"), kept, reduction, "hybrid_loss", "labels_seq"
    )
    gi = hybrid_gate(gate, g, gate_param, features, B).to(tok.device)  # [B]
    loss = (gi * tok + (1 - gi) * sent).mean()
    return {"loss": loss, "token_loss": tok.mean(), "sentence_loss": sent.mean(), "g": gi.mean(), "g_seq": gi}
