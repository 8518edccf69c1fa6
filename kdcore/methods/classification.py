"""Logit methods: classic KD, DKD, CAKD, NormKD, label smoothing (METHODS.md §1, 3, 4, 5, 12).

Each step calls the tested loss or `*_components` function of kdcore.losses and only weighs its parts.
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, flag, lam, temperature
from kdcore.methods.step import Component, StepTensors, label_loss
from kdcore.methods.table import Method, register_method

STRONG_RULES = ("target", "topk", "mass", "labels")  # = kdcore.losses.RULES (a test keeps them equal)


def _kd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import kd_components

    T, lam = float(p["temperature"]), float(p["lam"])
    parts = kd_components(b.student_logits, b.teacher_logits, None, temperature=T, standardize=p["standardize"])
    return [("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets)), ("kl", lam, T * T * parts["kl"].mean())]


def _dkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import dkd_components

    T = float(p["temperature"])
    parts = dkd_components(b.student_logits, b.teacher_logits, b.targets, temperature=T)
    w = 1.0 if p.get("warmup") is None else _warmup(b.epoch, p["warmup"])  # methods/13 §13.3c: not the CE
    return [
        ("tckd", w * float(p["alpha"]), T * T * parts["tckd"].mean()),
        ("nckd", w * float(p["beta"]), T * T * parts["nckd"].mean()),
    ]


def _warmup(epoch: int, warmup: float) -> float:
    from kdcore.losses import warmup_weight

    return warmup_weight(epoch, warmup)


def _cakd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import cakd_components, strong_set

    T, rule = float(p["temperature"]), p["rule"]
    labels = b.targets if rule in ("target", "labels") else None
    strong = strong_set(b.teacher_logits, rule=rule, labels=labels, k=p["k"], tau=p["tau"], temperature=T)  # [B, C]
    parts = cakd_components(b.student_logits, b.teacher_logits, strong, temperature=T)
    return [
        ("bcd", 1.0, T * T * parts["bcd"].mean()),
        ("scd", float(p["alpha"]), T * T * parts["scd"].mean()),
        ("wcd", float(p["beta"]), T * T * parts["wcd"].mean()),
    ]


def _cakd_check(p: dict, where: str) -> list[str]:
    if p["rule"] == "topk" and p["k"] is None:
        return [f"{where}.k is required with rule 'topk': the number of strong classes (an integer >= 1)"]
    if p["rule"] == "mass" and p["tau"] is None:
        return [f"{where}.tau is required with rule 'mass': the teacher mass the strong set covers, in (0, 1]"]
    return []


def _cakd_fit(task: str, p: dict) -> list[str]:
    if task == "multilabel" and p["rule"] == "target":
        return [
            "objective 'cakd' with rule 'target' needs one target class per sample, but the pair is "
            "multi-label: use rule 'labels' (its labels are the strong set), 'topk' or 'mass'"
        ]
    if task != "multilabel" and p["rule"] == "labels":
        return [
            f"CAKD's strong-set rule 'labels' needs multi-hot labels, but the pair's task is '{task}': "
            f"use rule 'target', 'topk' or 'mass'"
        ]
    return []


def _bkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import binary_kd_components

    T, lam = float(p["temperature"]), float(p["lam"])
    parts = binary_kd_components(b.student_logits, b.teacher_logits, b.targets, temperature=T)
    return [("bce", 1.0 - lam, parts["bce"].mean()), ("kl", lam, T * T * parts["kl"].mean())]


def _normkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import normkd_loss

    return [("normkd", 1.0, normkd_loss(b.student_logits, b.teacher_logits, t_norm=float(p["t_norm"])))]


def _ls(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import label_smoothing_loss

    return [("ls", 1.0, label_smoothing_loss(b.student_logits, b.targets, eps=float(p["eps"])))]


register_method(
    Method(
        "kd",
        _kd,
        "kdcore.losses:kd_loss",
        "Classic KD (Hinton 2015): (1 − λ)·CE + λ·T²·KL",
        "METHODS.md §1",
        tasks=("classification",),
        task_hints={
            "multilabel": "its softmax across labels would make them compete for one unit of probability "
            "mass; per-label binary KD is 'bkd'"
        },
        components="kdcore.losses:kd_components",
        aliases=("hinton",),
        source="Hinton, Vinyals & Dean 2015, arXiv 1503.02531",
        params=(
            temperature(4.0),
            lam(0.9),
            flag("standardize", False, "standardise each logit vector before T (Sun et al. 2024)"),
        ),
    )
)

register_method(
    Method(
        "dkd",
        _dkd,
        "kdcore.losses:dkd_loss",
        "Decoupled KD: T²·(α·TCKD + β·NCKD) + CE",
        "METHODS.md §3",
        components="kdcore.losses:dkd_components",
        ce_default=True,
        source="Zhao et al. CVPR 2022, arXiv 2203.08679",
        params=(
            temperature(4.0),
            Param("alpha", 1.0, "weight α of the target-class term TCKD", low=0.0),
            Param("beta", 8.0, "weight β of the non-target term NCKD", low=0.0),
            Param(
                "warmup",
                None,
                "epochs E_w of the warm-up min(e/E_w, 1) on the DKD term, not the CE (mdistiller: 20; unset: none)",
                low=0.0,
                low_open=True,
            ),
        ),
        also_calls=("kdcore.losses:warmup_weight",),
    )
)

register_method(
    Method(
        "cakd",
        _cakd,
        "kdcore.losses:cakd_loss",
        "Correlation-aware KD: T²·(BCD + α·SCD + β·WCD) + CE",
        "METHODS.md §4",
        tasks=("classification", "multilabel"),
        components="kdcore.losses:cakd_components",
        also_calls=("kdcore.losses:strong_set",),
        ce_default=True,
        source="Zhang, Chen, Ning, Yang, Yuan 2024, arXiv 2410.14741",
        check=_cakd_check,
        fit=_cakd_fit,
        task_defaults={"multilabel": {"rule": "labels"}},
        params=(
            temperature(4.0),
            Param("alpha", 1.0, "weight α of the strong-class term SCD", low=0.0),
            Param("beta", 1.0, "weight β of the weak-class term WCD", low=0.0),
            choice("rule", "target", "how the strong set is chosen", STRONG_RULES),
            Param("k", None, "rule 'topk': the number of strong classes", kind="int", low=1),
            Param("tau", None, "rule 'mass': the teacher mass the strong set covers", low=0.0, high=1.0, low_open=True),
        ),
    )
)

register_method(
    Method(
        "normkd",
        _normkd,
        "kdcore.losses:normkd_loss",
        "NormKD: per-sample temperatures from the logits' spread",
        "METHODS.md §5",
        tasks=("classification", "multilabel"),
        components="kdcore.losses:normkd_components",
        ce_default=True,
        source="Chi et al. 2023, arXiv 2308.00520",
        params=(Param("t_norm", 2.0, "T_norm: each sample's T is T_norm·std(logits)", low=0.0, low_open=True),),
    )
)

register_method(
    Method(
        "ls",
        _ls,
        "kdcore.losses:label_smoothing_loss",
        "Label smoothing (KD from a uniform 'teacher'), a baseline",
        "METHODS.md §12",
        aliases=("label_smoothing",),
        source="Szegedy et al. 2016, arXiv 1512.00567",
        params=(Param("eps", 0.1, "smoothing ε: the label keeps 1 − ε + ε/C", low=0.0, high=1.0),),
    )
)

register_method(
    Method(
        "bkd",
        _bkd,
        "kdcore.losses:binary_kd_loss",
        "Per-label binary KD for multi-label pairs: (1 − λ)·BCE + λ·T²·mean_c KL(σ_T(z_t) ‖ σ_T(z_s))",
        "kdcore/losses/binary_kd.py (Hinton's recipe per label; no METHODS.md section)",
        tasks=("multilabel",),
        components="kdcore.losses:binary_kd_components",
        aliases=("binary_kd",),
        source="Hinton, Vinyals & Dean 2015, arXiv 1503.02531, applied to each label's Bernoulli",
        params=(
            temperature(4.0),
            lam(0.9, "weight λ of the KL term (BCE gets 1 − λ)"),
        ),
    )
)
