"""Weight distillation (methods/14 §14.2) as a method-table entry: a whole training procedure
(kdcore.jobs.weight_distill_job) whose per-step loss is the task loss on the teacher's targets:
teacher argmax labels with label smoothing (default, the classification analogue of the authors'
sequence-level KD data), or §1 KD (`target="kd"`).
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, lam, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

TARGETS = ("teacher_argmax", "kd")  # = kdcore.jobs.weight_distill.TARGETS
GROUPINGS = ("auto", "stride", "spread")  # = kdcore.jobs.weight_distill_groups.GROUPINGS


def _weight_distill(b: StepTensors, p: dict) -> list[Component]:
    """One step of either phase: CE on the teacher's argmax (smoothed), or (1 − λ)·CE + λ·T²·KL."""
    import torch.nn.functional as F

    if p["target"] == "teacher_argmax":
        hard = b.teacher_logits.detach().argmax(-1)  # [B]
        eps = float(p["label_smoothing"])
        return [("ce_teacher", 1.0, F.cross_entropy(b.student_logits, hard, label_smoothing=eps))]
    from kdcore.losses import kd_components
    from kdcore.methods.step import label_loss

    T, lam = float(p["temperature"]), float(p["lam"])
    kl = kd_components(b.student_logits, b.teacher_logits, None, temperature=T)["kl"].mean()
    return [("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets)), ("kl", lam, T * T * kl)]


register_method(
    Method(
        "weight_distill",
        _weight_distill,
        "kdcore.losses.weight_distill:weight_distill_generator",
        "Weight distillation: phase 1 trains a generator of the student's weights from the teacher's; phase 2 the "
        "plain student",
        "methods/14 §14.2",
        aliases=("wd", "weight_distillation"),
        also_calls=("kdcore.losses.weight_distill:materialize", "kdcore.losses:kd_loss"),
        source="Lin, Li, Wang, Li, Du, Xiao & Zhu, ACL 2021, arXiv 2009.09152 (github.com/Lollipop321/weight-distillation)",
        procedure="kdcore.jobs.weight_distill_job:run_weight_distill",
        task_hints={"causal_lm": "its groups and run are built for classifiers (the sample CNNs)"},
        params=(
            temperature(4.0, "softmax temperature T of target='kd'"),
            lam(0.9, "weight λ of the KD term of target='kd' (CE gets 1 − λ)"),
            choice(
                "target",
                "teacher_argmax",
                "the task loss: CE on the teacher's argmax labels (smoothed), or §1 KD",
                TARGETS,
            ),
            Param("label_smoothing", 0.1, "ε of target='teacher_argmax'", low=0.0, high=1.0, high_open=True),
            Param(
                "phase1_epochs",
                None,
                "epochs of phase 1 (generated weights); the rest are phase 2 (unset: half, rounded down)",
                kind="int",
                low=1,
            ),
            choice(
                "grouping",
                "auto",
                "the rule of the default groups: §14.2's stride (k = L_t/L_s), spread (k = 1), auto (stride if it fits)",
                GROUPINGS,
            ),
            Param(
                "groups",
                None,
                "{student_module: 'teacher_a+teacher_b'} generating each student module (unset: the grouping rule)",
                kind="layers",
            ),
        ),
    )
)
