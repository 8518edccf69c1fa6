"""On-policy distillation of causal LMs (methods/15 §15.3–15.5): GKD, MiniLLM, DistiLLM.

These run as their own job (kdcore/jobs/onpolicy_job.py, chosen by `job_class`): each step the job
decides where the completions come from (the data, the student's samples, the teacher's, a replay
buffer), generates when it must, and hands the step the teacher-forced logits of both models on the
same tokens, with `targets` the next ids of the completion positions (-100 elsewhere, §15.0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdcore.methods.params import Param, choice, flag, temperature
from kdcore.methods.step import IGNORE_INDEX, Component, StepTensors
from kdcore.methods.table import Method, register_method

if TYPE_CHECKING:
    from torch import Tensor

ONPOLICY_METHODS = ("gkd", "minillm", "distillm")
PROMPT_SOURCES = ("auto", "records", "window")  # the `prompts` parameter (kdcore.jobs.sequence_data)
_CROSS = {"causal_lm": "on-policy methods generate with the student: both models must share a tokenizer"}


def hf_labels(targets: Tensor) -> Tensor:
    """Runner targets [B, L] (position j holds token j + 1) -> HF labels [B, L] (shifted inside the losses)."""
    import torch.nn.functional as F

    return F.pad(targets[:, :-1], (1, 0), value=IGNORE_INDEX)


def _gkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import gkd_loss

    value = gkd_loss(
        b.student_logits,
        b.teacher_logits,
        hf_labels(b.targets),
        divergence=p["divergence"],
        beta=p["beta"],
        temperature=p["temperature"],
        reduction=p["reduction"],
    )
    return [(f"gkd_{p['divergence']}", 1.0, value)]


def _minillm(b: StepTensors, p: dict) -> list[Component]:
    import torch

    from kdcore.losses import minillm_loss

    labels = hf_labels(b.targets)
    tokens = torch.where(labels == IGNORE_INDEX, torch.zeros_like(labels), labels)  # kept positions: the taken ids
    out = minillm_loss(
        b.student_logits, b.teacher_logits, tokens, labels, mix_alpha=p["mix_alpha"], length_norm=p["length_norm"]
    )
    return [("single_step", 1.0, out["single_step"]), ("long", 1.0, out["long"])]


def _distillm(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.divergences import divergence_loss

    value = divergence_loss(
        b.student_logits,
        b.teacher_logits,
        p["divergence"],
        labels=b.targets,
        alpha=p["alpha"],
        temperature=p["temperature"],
    )
    return [(p["divergence"], 1.0, value)]


def sampling_params(max_new_tokens: int) -> tuple[Param, ...]:
    """The sampling settings every on-policy method takes (HF generate names; τ_s apart from T)."""
    return (
        choice(
            "prompts",
            "auto",
            "where prompts come from: records (prompt/completion data: a file's fields, tinylang's copy task), "
            "window (the first prompt_tokens tokens of each training sequence), auto (records when the data has them)",
            PROMPT_SOURCES,
        ),
        Param(
            "prompt_tokens",
            16,
            "prompts='window': the first tokens of each training sequence that form its prompt",
            kind="int",
            low=1,
        ),
        Param("max_new_tokens", max_new_tokens, "tokens generated per completion at most", kind="int", low=1),
        Param("sample_temperature", 1.0, "sampling temperature τ_s (not the divergence's T)", low=0.0, low_open=True),
        Param("top_k", 0, "sample from the k most likely tokens (0: off)", kind="int", low=0),
        Param("top_p", 1.0, "nucleus sampling mass (1: off)", low=0.0, high=1.0, low_open=True),
    )


register_method(
    Method(
        "gkd",
        _gkd,
        "kdcore.losses:gkd_loss",
        "On-policy / generalized KD: a λ share of batches on the student's own samples (fkl, rkl, jsd(β))",
        "methods/15 §15.3",
        tasks=("causal_lm",),
        source="Agarwal et al., ICLR 2024, arXiv 2306.13649; TRL GKDTrainer",
        task_hints=_CROSS,
        params=(
            Param("lmbda", 0.5, "λ: the share of steps trained on the student's own samples", low=0.0, high=1.0),
            choice("divergence", "jsd", "the token divergence D", ("jsd", "fkl", "rkl")),
            Param(
                "beta",
                0.5,
                "generalized JSD's β (jsd only; 0 and 1 are fkl and rkl)",
                low=0.0,
                high=1.0,
                low_open=True,
                high_open=True,
            ),
            temperature(1.0),
            flag("seq_kd", False, "the (1 − λ) steps train on the teacher's samples instead of the data"),
            choice(
                "reduction",
                "token",
                "token: pool the batch's positions; sequence: the paper's eq. 2",
                ("token", "sequence"),
            ),
            *sampling_params(32),
        ),
    )
)

register_method(
    Method(
        "minillm",
        _minillm,
        "kdcore.losses:minillm_loss",
        "MiniLLM: reverse-KL policy gradient on samples of α·teacher + (1 − α)·student, one update per rollout",
        "methods/15 §15.4",
        tasks=("causal_lm",),
        source="Gu et al., ICLR 2024, arXiv 2306.08543; microsoft/LMOps minillm",
        task_hints=_CROSS,
        params=(
            Param(
                "mix_alpha",
                0.2,
                "α: the teacher's share of the sampling mixture (0: the student alone)",
                low=0.0,
                high=1.0,
                high_open=True,
            ),
            flag("length_norm", True, "R̄: the mean of the future rewards (False: their sum, the exact rkl gradient)"),
            *sampling_params(32),
        ),
    )
)

register_method(
    Method(
        "distillm",
        _distillm,
        "kdcore.divergences:divergence_loss",
        "DistiLLM: skew KL with student samples switched on adaptively (validation loss rises) and replayed",
        "methods/15 §15.5",
        tasks=("causal_lm",),
        source="Ko et al., ICML 2024, arXiv 2402.03898; jongwooko/distillm",
        task_hints=_CROSS,
        params=(
            choice("divergence", "skew_rkl", "skew divergence", ("skew_rkl", "skew_fkl")),
            Param("alpha", 0.1, "skew α (0: the plain KL)", low=0.0, high=1.0, high_open=True),
            temperature(1.0),
            Param("init_phi", 0.0, "φ₀: the starting student-data probability", low=0.0, high=1.0),
            Param(
                "phi_step", 0.1, "φ's rise when the validation loss rises by loss_eps", low=0.0, high=1.0, low_open=True
            ),
            Param("loss_eps", 0.1, "ε: the validation-loss rise that raises φ", low=0.0),
            Param("capacity", 1000, "replay buffer size (sequences)", kind="int", low=1),
            choice(
                "replay_ratio",
                "decreasing",
                "generate share once the buffer is full",
                ("decreasing", "constant", "increasing"),
            ),
            *sampling_params(32),
        ),
    )
)
