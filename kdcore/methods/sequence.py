"""Sequence-level methods for causal LMs (methods/15 §15.1 SeqKD, §15.2 hybrid).

Both train on the teacher's completions ŷ of the dataset's prompts, generated once before training
and cached in the run store (kdcore.sequence.cached_targets); the runner's sequence job
(kdcore.jobs.sequence_job) swaps the batches. `seqkd`'s batch is x ⧺ ŷ; `hybrid`'s batch is the
data x ⧺ y, with the student's logits on x ⧺ ŷ and their targets in ``batch.extras``.
"""

from __future__ import annotations

from typing import Any

from kdcore.methods.params import Param, choice, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

SEQUENCE_METHODS = ("seqkd", "hybrid")
GATE_KEY = "hybrid_gate"  # the learned gate's module in batch.projectors
SEQ_LOGITS, SEQ_TARGETS = "seq_student_logits", "seq_targets"  # batch.extras keys of the hybrid job


def _generation_params(decoding: str) -> tuple[Param, ...]:
    """How the teacher's targets ŷ are generated (recorded with them; they key the cache)."""
    return (
        choice("decoding", decoding, "how the teacher decodes ŷ", ("beam", "greedy", "sample")),
        Param("num_beams", 5, "beam width (decoding 'beam')", kind="int", low=1),
        Param("max_new_tokens", 128, "new tokens per completion at most (capped by the context)", kind="int", low=1),
        Param("gen_temperature", 1.0, "sampling temperature τ_s (decoding 'sample')", low=0.0, low_open=True),
        Param("top_k", 0, "sampling: keep the k most likely tokens (0 = off)", kind="int", low=0),
        Param("top_p", 1.0, "sampling: nucleus mass (1 = off)", low=0.0, high=1.0, low_open=True),
    )


def _seqkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses.sequence import labels_from_targets, seqkd_components

    alpha, T = float(p["alpha"]), float(p["temperature"])
    parts = seqkd_components(b.student_logits, b.teacher_logits, labels_from_targets(b.targets), temperature=T)
    out: list[Component] = [("nll", 1.0 - alpha, parts["nll"])]
    if alpha > 0:
        out.append(("word_ce", alpha, parts["word_ce"]))
    out.append(("word_fkl", 0.0, parts["word_fkl"]))  # what the view reports (§15.1): CE = fkl + H(p)
    return out


def _hybrid_modules(p: dict, s_feats: dict, t_feats: dict) -> dict[str, Any]:
    if p["gate"] != "learned":
        return {}
    import torch
    from torch import nn

    gate = nn.Module()
    gate.theta = nn.Parameter(torch.zeros(()))  # θ₀ = 0: g = σ(θ) = 0.5
    return {GATE_KEY: gate}


def _hybrid(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses.sequence import hybrid_loss, labels_from_targets

    if SEQ_LOGITS not in b.extras or SEQ_TARGETS not in b.extras:
        raise ValueError(
            "The 'hybrid' step needs the student's logits on the teacher's completions (batch.extras "
            f"{SEQ_LOGITS!r}, {SEQ_TARGETS!r}): run it as a job (kdcore.jobs.sequence_job), which generates them."
        )
    theta = b.projectors[GATE_KEY].theta if b.projectors is not None and GATE_KEY in b.projectors else None
    out = hybrid_loss(
        b.student_logits,
        b.teacher_logits,
        labels_from_targets(b.targets),
        b.extras[SEQ_LOGITS],
        labels_from_targets(b.extras[SEQ_TARGETS]),
        gate=p["gate"],
        g=float(p["g"]),
        gate_param=theta,
        token_term=p["token_term"],
        token_targets=p["token_targets"],
        temperature=float(p["temperature"]),
        reduction=p["reduction"],
    )
    return [
        ("hybrid", 1.0, out["loss"]),
        ("token_loss", 0.0, out["token_loss"]),
        ("sentence_loss", 0.0, out["sentence_loss"]),
        ("gate_g", 0.0, out["g"]),
    ]


def _hybrid_check(p: dict, where: str) -> list[str]:
    if p.get("gate") == "input":
        return [
            f"{where}: gate 'input' (g_i = σ(w·h̄_i + b)) is available in kdcore.losses.sequence.hybrid_loss "
            "but not in runs yet: use gate 'fixed' or 'learned'"
        ]
    return []


register_method(
    Method(
        "seqkd",
        _seqkd,
        "kdcore.losses.sequence:seqkd_loss",
        "Sequence-level KD: the student learns the teacher's generated completions (+ an optional word term)",
        "methods/15 §15.1",
        tasks=("causal_lm",),
        aliases=("seq_kd", "sequence_kd"),
        components="kdcore.losses.sequence:seqkd_components",
        source="Kim & Rush, EMNLP 2016, arXiv 1606.07947",
        params=(
            Param(
                "alpha",
                0.0,
                "weight α of the word-level CE on ŷ (0: Seq-KD; MiniLLM's baseline 0.5)",
                low=0.0,
                high=1.0,
            ),
            temperature(1.0),
            *_generation_params("beam"),
        ),
    )
)

register_method(
    Method(
        "hybrid",
        _hybrid,
        "kdcore.losses.sequence:hybrid_loss",
        "Hybrid token + sentence KD: g·token KL on the data + (1 − g)·NLL of the teacher's completions",
        "methods/15 §15.2",
        tasks=("causal_lm",),
        aliases=("hybrid_kd",),
        components="kdcore.losses.sequence:hybrid_token_terms",
        source="Wei et al., IJCAI 2024, arXiv 2404.14827 (provisional: the gate's form is the library's)",
        modules=_hybrid_modules,
        check=_hybrid_check,
        params=(
            choice("gate", "fixed", "fixed g, or a learned scalar g = σ(θ)", ("fixed", "learned", "input")),
            Param("g", 0.5, "the fixed gate (1: token-level KD, 0: Seq-KD)", low=0.0, high=1.0),
            choice("token_term", "kl", "token term: KL(p‖q) or the CE −Σ p log q", ("kl", "ce")),
            choice(
                "token_targets",
                "data",
                "the token term's sequences: the data completion y or the teacher's ŷ",
                ("data", "teacher"),
            ),
            choice("reduction", "sequence", "per-sequence means, or pooled tokens", ("sequence", "token")),
            temperature(1.0),
            *_generation_params("beam"),
        ),
    )
)
