"""Methods whose student carries more than its own head: Be Your Own Teacher (auxiliary exits,
methods/13 §13.4b) and education distillation (a student that grows a grade of classes at a time, §13.5).

Their steps need what the strategy jobs provide (kdcore.jobs.byot_job, education_job): BYOT's exit
heads in the job's learned parts under `EXITS_KEY`, the features of the exit layers; education's
current head and the batch's grade. Each step calls the tested loss (kdcore.losses.byot_losses,
education_kd_loss) and only names its parts.
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, flag, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

EXITS_KEY = "byot_exits"  # = kdcore.exits.EXITS_KEY (a test keeps them equal)
FEATURE_NORMS = ("l2", "squared")
TEACHERS = (
    "restricted",
    "trained",
)  # the grade's teacher: the pair's, restricted to the grade's classes; or one trained on them


def _byot(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import byot_losses

    if b.projectors is None or EXITS_KEY not in b.projectors:
        raise ValueError(
            "objective 'byot' trains auxiliary exits that the runner builds (kdcore.jobs.strategy_jobs); "
            "run it as a job's own objective (not inside 'sum')."
        )
    out = b.projectors[EXITS_KEY](b.student_feats)
    per_exit, _ = byot_losses(
        [*out.logits, b.student_logits],
        b.targets,
        adapted_feats=out.adapted,
        deep_feat=out.deep,
        temperature=float(p["temperature"]),
        alpha=float(p["alpha"]),
        lam=float(p["hint_weight"]),
        t_squared=bool(p["t_squared"]),
        feature=p["feature"],
        feature_exits=p["feature_exits"],
    )
    return [(f"exit{k}", 1.0, loss) for k, loss in enumerate(per_exit, start=1)]


def _education(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import education_kd_loss

    grade = p.get("grade_slice") or (0, b.student_logits.shape[-1])  # set per batch by the education job
    loss = education_kd_loss(
        b.student_logits,
        b.teacher_logits,
        b.targets,
        tuple(grade),
        temperature=float(p["temperature"]),
        ce_weight=float(p["ce_weight"]),
    )
    return [("education", 1.0, loss)]


def _education_check(p: dict, where: str) -> list[str]:
    b = p["boundaries"]
    if b is not None and (len(b) != len(p["ratios"]) - 1 or any(x >= y for x, y in zip(b, b[1:]))):
        return [
            f"{where}.boundaries must be {len(p['ratios']) - 1} strictly increasing epochs (one per grade "
            f"after the first, as many as ratios has entries minus one); got {b!r}"
        ]
    if p["layers"] is not None and len(p["layers"]) != len(p["ratios"]) - 1:
        return [
            f"{where}.layers must name {len(p['ratios']) - 1} student layer(s), one per grade before the "
            f"last (its head reads that layer); got {p['layers']!r}"
        ]
    return []


register_method(
    Method(
        "byot",
        _byot,
        "kdcore.losses:byot_losses",
        "Be Your Own Teacher: auxiliary exits on the student; its own head teaches the shallower exits "
        "(CE + KL + feature hint); the teacher is unused",
        "methods/13 §13.4b",
        aliases=("be_your_own_teacher", "self_distillation"),
        source="Zhang, Song, Gao, Chen, Bao & Ma ICCV 2019, arXiv 1905.08094 (journal code)",
        task_hints={
            "causal_lm": "its exits are classifier heads on a CNN's intermediate layers",
            "multilabel": "its losses are single-label cross-entropies",
        },
        params=(
            Param(
                "layers",
                None,
                "student layers, shallow to deep: an exit on each but the last, whose pooled output is the "
                "deepest feature f_K (unset: the student's default layers)",
                kind="names",
            ),
            temperature(3.0, "temperature T of the exits' KL"),
            Param("alpha", 0.3, "weight α of the KL (the exit's CE gets 1 − α)", low=0.0, high=1.0),
            Param("hint_weight", 0.03, "weight λ of the feature hint ‖g_k(f_k) − f_K‖", low=0.0),
            flag("t_squared", False, "multiply the KL by T² (the authors' code does not)"),
            choice("feature", "l2", "feature norm: Frobenius (as coded) or squared L2", FEATURE_NORMS),
            Param(
                "feature_exits", None, "shallow exits (0-based) with a feature hint (unset: all)", kind="ints", low=0
            ),
            Param(
                "width",
                None,
                "bottleneck width of the exit heads (unset: the deepest feature's width)",
                kind="int",
                low=1,
            ),
        ),
    )
)

register_method(
    Method(
        "education",
        _education,
        "kdcore.losses:education_kd_loss",
        "Education distillation: classes in grades, one teacher per grade, a student that grows a grade "
        "at a time and reviews the earlier grades",
        "methods/13 §13.5",
        aliases=("education_distillation",),
        also_calls=("kdcore.losses:grade_partition", "kdcore.losses:grade_of_epoch"),
        source="Feng, Li, Wu & Duan 2023, arXiv 2311.13811 (code Revolutioner1/ED, evident intent)",
        check=_education_check,
        task_hints={
            "causal_lm": "its grades are groups of classes of a classifier",
            "multilabel": "§13.5 covers single-label classes only",
        },
        params=(
            temperature(4.0, "temperature T of the grade's KD term"),
            Param("ce_weight", 0.3, "weight w_ce of the CE (the KD term gets 1 − w_ce)", low=0.0, high=1.0),
            Param(
                "ratios",
                [1.0, 1.0, 1.0],
                "class shares of the grades, in class order (1:1:1 = 3 grades)",
                kind="floats",
                low=0.0,
                low_open=True,
            ),
            Param(
                "boundaries",
                None,
                "epochs where each grade after the first starts (unset: the paper's 150/180 of 240, scaled to the run)",
                kind="ints",
                low=2,
            ),
            Param(
                "layers",
                None,
                "student layer read by each grade's head but the last (unset: its default layers in order)",
                kind="names",
            ),
            choice(
                "teachers",
                "restricted",
                "the grade's teacher: the pair's teacher with its logits restricted to the grade's classes, or a "
                "fresh copy of its architecture trained on the grade's samples alone (the paper's)",
                TEACHERS,
            ),
            Param("teacher_epochs", 10, "epochs of each grade's teacher (teachers='trained')", kind="int", low=1),
        ),
    )
)
