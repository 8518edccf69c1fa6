"""Methods that run as a chain of runs, a finished student teaching the next stage (methods/13 §13.2):
TAKD's teacher-assistant path and DGKD's densely guided stages. `kdcore.jobs.chain.run_chain` builds
each stage's teacher (a ladder model trained in the previous stage; for DGKD the stack of every model
above the stage) and runs the stages as child runs; here is what one stage's step computes.
Born-again generations (`ban`, §13.4a) are a chain too; their entry is in strategies.py.
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, lam, temperature
from kdcore.methods.step import Component, StepTensors, label_loss
from kdcore.methods.table import Method, register_method

TAKD_PATHS = ("full", "midpoint", "none")  # every ladder size / the accuracy midpoint / no assistant (plain KD)
GUIDE_PREFIX = "guides."  # DGKD's teacher is a stack whose submodule guides.i is guide i (0: the teacher)


def _takd(b: StepTensors, p: dict) -> list[Component]:
    """One TAKD stage is §1 classic KD from the stage's teacher (the previous stage's student)."""
    from kdcore.losses import kd_components

    T, lam = float(p["temperature"]), float(p["lam"])
    parts = kd_components(b.student_logits, b.teacher_logits, None, temperature=T)
    return [("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets)), ("kl", lam, T * T * parts["kl"].mean())]


def guide_layers(params: dict) -> list[str]:
    """The teacher layers holding the logits of DGKD's guides after the first: guides.1 … guides.{n-1}
    (guide 0 is the teacher, whose logits are the batch's teacher logits)."""
    return [f"{GUIDE_PREFIX}{i}" for i in range(1, int(params["guides"]))]


def _dgkd(b: StepTensors, p: dict) -> list[Component]:
    """λ·T²·Σ_{kept guides} KL (+ (1 − λ)·CE); `drop_num` guides dropped at random each step (at most
    all but one), drawn from torch's global generator (seeded by the run, saved with its resume state)."""
    import torch

    from kdcore.losses import dgkd_choose_dropped, dgkd_loss

    guides = [b.teacher_logits, *(b.teacher_feats[name] for name in guide_layers(p))]  # each [B, C]
    drop = min(int(p["drop_num"]), len(guides) - 1)
    dropped = dgkd_choose_dropped(torch.default_generator, len(guides), drop) if drop else ()
    T, lam = float(p["temperature"]), float(p["lam"])
    kd = dgkd_loss(b.student_logits, guides, None, temperature=T, lam=1.0, dropped=dropped)
    out: list[Component] = [("kl", lam, kd)]
    return out + ([("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets))] if lam < 1.0 else [])


register_method(
    Method(
        "takd",
        _takd,
        "kdcore.losses:kd_loss",
        "Teacher-assistant KD: a chain teacher → assistants → student, each stage classic KD from the one before",
        "methods/13 §13.2",
        aliases=("teacher_assistant",),
        also_calls=("kdcore.losses:takd_path",),
        source="Mirzadeh, Farajtabar, Li, Levine, Matsukawa & Ghasemzadeh AAAI 2020, arXiv 1902.03393",
        chain=True,
        params=(
            temperature(4.0, "softmax temperature T of every stage"),
            lam(0.9, "weight λ of the KL term of every stage (CE gets 1 − λ)"),
            choice(
                "path",
                "full",
                "assistants: every ladder size (full), the one whose accuracy is nearest the teacher/student "
                "midpoint (midpoint), or none (plain KD)",
                TAKD_PATHS,
            ),
        ),
    )
)

register_method(
    Method(
        "dgkd",
        _dgkd,
        "kdcore.losses:dgkd_loss",
        "Densely guided KD: each stage learns from the teacher and every assistant above it, one random guide dropped",
        "methods/13 §13.2",
        also_calls=("kdcore.losses:dgkd_choose_dropped",),
        source="Son, Na, Choi & Hwang ICCV 2021, arXiv 2009.08825",
        chain=True,
        teacher_layers=guide_layers,
        params=(
            temperature(5.0),
            lam(1.0, "weight λ of the summed KL terms (CE gets 1 − λ)"),
            Param("drop_num", 1, "guides dropped at random each step (at most all but one)", kind="int", low=0),
            Param(
                "guides", 1, "guides in the teacher stack (set by the chain; 1: the teacher alone)", kind="int", low=1
            ),
        ),
    )
)
