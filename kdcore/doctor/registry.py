"""Every check the doctor runs, in report order: a plain list of (id, family, function).

A check is `fn(ctx: Context) -> Finding | None`: None when the run is healthy in that respect; it
raises `Skip("why")` when the run lacks what the check needs. The id is the id of the finding it
returns; ids are stable (they are part of the JSON output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kdcore.doctor import (
    balance,
    capacity,
    inputs,
    language,
    optimisation,
    overfitting,
    progress,
    soft_labels,
    teacher,
)
from kdcore.doctor.context import Context
from kdcore.doctor.findings import Finding


@dataclass(frozen=True)
class Check:
    id: str  # the id of the finding it returns
    family: str  # the module / topic it belongs to
    fn: Callable[[Context], Finding | None]  # the check itself
    summary: str  # one line: what it looks for


CHECKS: list[Check] = [
    Check("optim.nonfinite", "optimisation", optimisation.check_nonfinite, "the loss became NaN or infinite"),
    Check("optim.diverging", "optimisation", optimisation.check_diverging, "the loss rose over the run"),
    Check("optim.not_decreasing", "optimisation", optimisation.check_not_decreasing, "the loss did not fall"),
    Check(
        "optim.lr_scale",
        "optimisation",
        optimisation.check_lr_scale,
        "learning rate far outside the optimiser's usual range",
    ),
    Check(
        "optim.still_improving",
        "optimisation",
        progress.check_still_improving,
        "run still improving fast at its last epoch (undertrained)",
    ),
    Check(
        "teacher.train_mode",
        "teacher",
        teacher.check_train_mode,
        "teacher ran with dropout / batch-norm updates active",
    ),
    Check("teacher.gradients", "teacher", teacher.check_gradients, "teacher received gradients"),
    Check(
        "inputs.teacher_inputs",
        "inputs",
        inputs.check_teacher_inputs,
        "teacher's outputs depend on augmentation or batch order",
    ),
    Check("teacher.wrong", "teacher", teacher.check_wrong, "teacher wrong on a large share of the training data"),
    Check(
        "teacher.miscalibrated",
        "teacher",
        teacher.check_miscalibrated,
        "teacher's confidence does not match its accuracy (ECE)",
    ),
    Check("soft_labels.one_hot", "soft_labels", soft_labels.check_one_hot, "soft labels nearly one-hot at the run's T"),
    Check("soft_labels.uniform", "soft_labels", soft_labels.check_uniform, "soft labels nearly uniform at the run's T"),
    Check("balance.kd_negligible", "balance", balance.check_kd_negligible, "KD gradient negligible against CE's"),
    Check("balance.kd_dominant", "balance", balance.check_kd_dominant, "KD gradient drowns CE's"),
    Check(
        "capacity.kl_plateau",
        "capacity",
        capacity.check_kl_plateau,
        "student cannot fit the teacher's outputs on training data",
    ),
    Check("capacity.no_gain", "capacity", capacity.check_no_gain, "student alone does as well as the distilled one"),
    Check(
        "overfit.teacher",
        "overfitting",
        overfitting.check_teacher_overfit,
        "train/validation gap grows while the KD term falls (overfitting to the teacher)",
    ),
    Check("lm.padding_counted", "language", language.check_padding_counted, "loss counted on padding positions"),
    Check(
        "lm.vocab_mismatch", "language", language.check_vocab_mismatch, "teacher and student vocabulary sizes differ"
    ),
    Check("lm.padded_vocab", "language", language.check_padded_vocab, "padded vocabulary entries carry teacher mass"),
    Check(
        "lm.tokenizers", "language", language.check_tokenizers, "teacher and student / data use different tokenizers"
    ),
    Check("lm.jsd_beta", "language", language.check_jsd_beta, "jsd with β near 0 or 1"),
    Check(
        "lm.temperature_mismatch",
        "language",
        language.check_temperature_mismatch,
        "different temperatures for teacher and student",
    ),
    Check("lm.hybrid_gate", "language", language.check_hybrid_gate, "a learned hybrid gate left [0.02, 0.98]"),
]
CHECK_IDS: tuple[str, ...] = tuple(c.id for c in CHECKS)
