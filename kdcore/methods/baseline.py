"""The baseline: the student alone on the labels (METHODS.md §1 with λ = 0). Registered last, so
menus list the distillation methods first."""

from __future__ import annotations

from kdcore.methods.step import Component, StepTensors, label_loss
from kdcore.methods.table import Method, register_method


def _ce(b: StepTensors, p: dict) -> list[Component]:
    return [("ce", 1.0, label_loss(b.task, b.student_logits, b.targets))]


register_method(
    Method(
        "ce",
        _ce,
        "kdcore.methods.step:label_loss",
        "The student alone, on the labels (the baseline)",
        "METHODS.md §1 (λ = 0)",
        tasks=("classification", "multilabel", "causal_lm"),  # an encoder task has no labels
    )
)
