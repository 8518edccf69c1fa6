"""Token-level divergences for causal language models (METHODS.md §6)."""

from __future__ import annotations

from kdcore.methods.params import Param, choice, temperature
from kdcore.methods.step import IGNORE_INDEX, Component, StepTensors
from kdcore.methods.table import Method, register_method

TOKEN_KINDS = ("fkl", "rkl", "jsd", "tvd", "skew_fkl", "skew_rkl", "akl", "uld")  # = kdcore.divergences.KINDS


def _token(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.divergences import divergence_loss

    mask = b.targets != IGNORE_INDEX  # [B, L]
    options = {k: p[k] for k in ("temperature", "beta", "alpha", "mu")}
    return [(p["kind"], 1.0, divergence_loss(b.student_logits, b.teacher_logits, p["kind"], mask=mask, **options))]


register_method(
    Method(
        "token",
        _token,
        "kdcore.divergences:divergence_loss",
        "Token-level divergence for language models (fkl, rkl, jsd, …)",
        "METHODS.md §6",
        tasks=("causal_lm",),
        components="kdcore.divergences:token_divergence",
        ce_default=True,
        source="METHODS.md §6 (GKD, DistiLLM, AKL, ULD)",
        params=(
            choice("kind", "fkl", "which divergence", TOKEN_KINDS),
            temperature(1.0),
            Param("beta", 0.5, "jsd / skew mixing weight β", low=0.0, high=1.0, low_open=True, high_open=True),
            Param("alpha", 0.1, "skew divergences' weight α (0: the plain KL)", low=0.0, high=1.0, high_open=True),
            Param("mu", 0.5, "akl's head/tail threshold μ", low=0.0, high=1.0),
        ),
    )
)
