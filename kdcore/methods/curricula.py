"""Curriculum strategies of methods/13 §13.3 that need the runner: CTKD's adversarially learned
temperature (§13.3a) and the teacher-difficulty curriculum over samples (§13.3b).

CTKD's θ is a learned part (`Method.modules`, trained with the student, found in batch.projectors);
its step calls the tested `ctkd_step` with the epoch the runner puts in the batch. The curriculum's
loss is classic KD; its entry is `paced`, so the runner orders the training samples by the teacher's
difficulty and draws each batch from the paced pool (kdcore.jobs.curriculum_pool).
"""

from __future__ import annotations

from typing import Any

from kdcore.methods.classification import _kd
from kdcore.methods.params import Param, choice, flag, lam, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

CTKD_KEY = "ctkd_theta"  # the key of CTKD's temperature module among a run's learned parts
ORDERS = ("easy", "anti", "random")  # easiest first; hardest first (control); random order (control)


def _ctkd_modules(p: dict, s_feats: dict, t_feats: dict) -> dict[str, Any]:
    from kdcore.losses import GlobalTemperature

    decay = bool(p["temp_weight_decay"])
    return {CTKD_KEY: GlobalTemperature(float(p["theta"]), float(p["t_start"]), float(p["t_range"]), decay)}


def _ctkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import ctkd_step

    # the runner's nn.Parameter enters through the gradient-reversal layer; outside a run θ is the fixed param
    theta: Any = float(p["theta"])
    if b.projectors is not None and CTKD_KEY in b.projectors:
        theta = b.projectors[CTKD_KEY].theta
    out = ctkd_step(
        b.student_logits,
        b.teacher_logits,
        b.targets,
        theta,
        b.epoch,
        gamma=float(p["gamma"]),
        alpha=float(p["alpha"]),
        t_start=float(p["t_start"]),
        t_range=float(p["t_range"]),
        loops=int(p["loops"]),
    )
    return [("ctkd", 1.0, out["loss"])]


def _curriculum(b: StepTensors, p: dict) -> list[Component]:
    return _kd(b, {**p, "standardize": False})


_NO_LABELS = "it ranks samples by the teacher's loss on their single class label"

register_method(
    Method(
        "ctkd",
        _ctkd,
        "kdcore.losses:ctkd_step",
        "CTKD: γ·CE + α·T²·KL with a learned temperature T = 1 + 20·σ(θ); θ ascends the loss through "
        "gradient reversal scaled by the cosine λ_e schedule",
        "methods/13 §13.3a",
        aliases=("curriculum_temperature",),
        also_calls=("kdcore.losses:ctkd_lambda", "kdcore.losses:ctkd_temperature"),
        source="Li et al. AAAI 2023, arXiv 2211.16231 (code zhengli97/CTKD, global temperature)",
        modules=_ctkd_modules,
        task_hints={"multilabel": _NO_LABELS + "; per-label binary KD is 'bkd'"},
        params=(
            Param("gamma", 0.1, "weight γ of the hard-label CE", low=0.0),
            Param("alpha", 0.9, "weight α of the T²·KL term", low=0.0),
            Param("t_start", 1.0, "T_start: the lowest temperature", low=0.0),
            Param("t_range", 20.0, "T_range: T ∈ (T_start, T_start + T_range)", low=0.0, low_open=True),
            Param("loops", 10, "E_loops: epochs of the cosine ramp of λ_e from 0 to 1", kind="int", low=1),
            Param("theta", 1.0, "initial θ (T(1) ≈ 15.62 with the defaults)", low=-50.0, high=50.0),
            flag(
                "temp_weight_decay",
                True,
                "θ gets the job's weight decay like the student's weights (the authors' code; it pulls T toward 11)",
            ),
        ),
    )
)

register_method(
    Method(
        "curriculum",
        _curriculum,
        "kdcore.losses:kd_loss",
        "Teacher-difficulty curriculum: classic KD on batches drawn from a pool of the easiest samples "
        "(by the teacher's CE) that grows by exponential pacing",
        "methods/13 §13.3b",
        components="kdcore.losses:kd_components",
        aliases=("curriculum_kd",),
        also_calls=("kdcore.losses:curriculum_order", "kdcore.losses:pacing", "kdcore.losses:pool_size"),
        source="Hacohen & Weinshall ICML 2019, arXiv 1904.03626 (code GuyHacohen/curriculum_learning)",
        paced=True,
        task_hints={
            "multilabel": _NO_LABELS + "; a multi-label pair has several",
            "causal_lm": _NO_LABELS + "; a language-model pair has none",
        },
        params=(
            temperature(4.0),
            lam(0.9),
            Param(
                "start",
                0.04,
                "pacing: the pool's starting fraction s of the ordered data",
                low=0.0,
                high=1.0,
                low_open=True,
            ),
            Param("inc", 1.9, "pacing: the pool grows by this factor every `step` iterations", low=1.0, low_open=True),
            Param("step", 100, "pacing: iterations between growths", kind="int", low=1),
            flag("balance", True, "class-balanced order (the r-th easiest of every class, r = 0, 1, …)"),
            choice("order", "easy", "easy first; anti (hardest first) and random are the controls", ORDERS),
        ),
    )
)
