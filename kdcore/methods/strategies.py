"""Training strategies of methods/13 that run as one objective in a single run: CLKD (§13.1),
Tf-KD's virtual teacher (§13.4c) and the born-again loss against the given teacher (§13.4a).

BAN's entry also drives its generations (a chain: kdcore/jobs/chain.py; TAKD and DGKD are in
chains.py). Exits (BYOT) and grades (education distillation) are entries in grown.py, trained by
kdcore.jobs.byot_job and education_job; CTKD and the curriculum (§13.3) are entries in curricula.py. Each step calls
the tested loss or components function and only weighs its parts.
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, flag, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

SOFTEN = ("probs", "log_probs")  # = kdcore.losses.SOFTEN (a test keeps them equal)


def _clkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import clkd_components

    parts = clkd_components(b.student_logits, b.teacher_logits, b.targets, cov_divisor=p["cov_divisor"])
    mu = float(p["mu"])
    return [
        ("ce", float(p["ce_weight"]), parts["ce"]),
        ("ins", mu, parts["ins"]),
        ("cla", mu * float(p["beta"]), parts["cla"]),
        ("cc", float(p["nu"]), parts["cc"]),
    ]


def _tfkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import tfkd_reg_components

    parts = tfkd_reg_components(
        b.student_logits, b.targets, a=float(p["a"]), temperature=float(p["temperature"]), soften=p["soften"]
    )
    alpha, C = float(p["alpha"]), b.student_logits.shape[-1]
    m = float(C) if p["multiplier"] is None else float(p["multiplier"])
    return [("ce", 1.0 - alpha, parts["ce"].mean()), ("kl", alpha * m / C, parts["kl"].mean())]


def _ban(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import ban_components

    w = float(p["label_weight"])
    parts = ban_components(b.student_logits, b.teacher_logits, b.targets if w > 0 else None)
    out: list[Component] = [("kl", 1.0, parts["kl"].mean())]
    return out + ([("ce", w, parts["ce"].mean())] if w > 0 else [])


register_method(
    Method(
        "clkd",
        _clkd,
        "kdcore.losses:clkd_loss",
        "Class-aware logit KD: MSE of L2-normalised logits per instance and per class, plus class covariance",
        "methods/13 §13.1",
        components="kdcore.losses:clkd_components",
        source="Zhang, Liu, Hopcroft & He 2022, arXiv 2211.14773 (correlation term unverified)",
        params=(
            Param("ce_weight", 0.1, "weight w_ce of the hard-label CE", low=0.0),
            Param("mu", 0.5, "weight μ of the instance and class terms", low=0.0),
            Param("beta", 2.0, "weight β of the class term inside μ·(ins + β·cla)", low=0.0),
            Param("nu", 0.4, "weight ν of the class-correlation term", low=0.0),
            Param(
                "cov_divisor", None, "divisor of the class covariance (unset: batch size − 1)", low=0.0, low_open=True
            ),
        ),
    )
)

register_method(
    Method(
        "tfkd",
        _tfkd,
        "kdcore.losses:tfkd_reg_loss",
        "Teacher-free KD: (1 − α)·CE + α·(m/C)·KL from a virtual teacher built from the labels (the teacher is unused)",
        "methods/13 §13.4c",
        components="kdcore.losses:tfkd_reg_components",
        aliases=("tf_kd", "teacher_free"),
        also_calls=("kdcore.losses:virtual_teacher",),
        source="Yuan, Tay, Li, Wang & Feng CVPR 2020, arXiv 1909.11723",
        params=(
            temperature(20.0, "temperature T of the virtual teacher (softmax of p^d / T)"),
            Param("a", 0.99, "the virtual teacher's probability on the label", low=0.0, high=1.0, low_open=True),
            Param("alpha", 0.1, "weight α of the virtual-teacher term (CE gets 1 − α)", low=0.0, high=1.0),
            Param("multiplier", None, "multiplier m of the KL, scaled m/C (unset: m = C)", low=0.0, low_open=True),
            choice(
                "soften",
                "probs",
                "how p^d is softened: softmax of the probabilities (as coded) or of their logs",
                SOFTEN,
            ),
        ),
    )
)

register_method(
    Method(
        "ban",
        _ban,
        "kdcore.losses:ban_loss",
        "Born-again loss: KL(softmax(z_t) ‖ softmax(z_s)) at T = 1 from a same-size teacher, + w·CE (BAN+L)",
        "methods/13 §13.4a",
        components="kdcore.losses:ban_components",
        aliases=("born_again",),
        also_calls=("kdcore.losses:cwtm_loss", "kdcore.losses:ban_ensemble"),
        source="Furlanello, Lipton, Tschannen, Itti & Anandkumar ICML 2018, arXiv 1805.04770",
        chain=True,
        params=(
            Param("label_weight", 0.0, "weight w of the hard-label CE (1: BAN+L)", low=0.0),
            Param("generations", 3, "born-again generations after generation 0 (a chain)", kind="int", low=1),
            flag("ensemble", False, "also evaluate the mean softmax of generations 1…k"),
        ),
    )
)
