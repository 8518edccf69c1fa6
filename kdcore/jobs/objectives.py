"""How a training step computes the job's loss from the method table (kdcore.methods).

Each method's `step(batch, params) -> [(name, weight, value)]` calls its tested loss; the job's loss is

    loss = Σ_terms term.weight · Σ_components weight · value  +  ce_weight · CE(labels)

and the runner records every component's value separately, so views and the doctor can plot them.
The helpers below (layers to capture, attention, projectors, fit to a pair) read the table's flags.
"""

from __future__ import annotations

from torch import Tensor, nn

from kdcore.jobs.config import JobConfig, LossTerm
from kdcore.methods import IGNORE_INDEX, Component, StepTensors, get_method, label_loss, misfit_message  # noqa: F401


def feature_layers(terms: list[LossTerm]) -> tuple[list[str], list[str]]:
    """(student layers, teacher layers) whose features the terms need, in order, without repeats."""
    s: list[str] = []
    t: list[str] = []
    for term in terms:
        method = get_method(term.name)
        if method.uses_layers:
            for a, b in term.params["layers"].items():
                s += [a] if a not in s else []
                t += [b] if b not in t else []
        if method.teacher_layers is not None:
            t += [b for b in method.teacher_layers(term.params) if b not in t]
    return s, t


def needs_attention(terms: list[LossTerm]) -> bool:
    return any(get_method(t.name).needs_attention for t in terms)


def compute_loss(terms: list[LossTerm], ce_weight: float, batch: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted loss and every component (name -> scalar tensor, unweighted as the method defines it)."""
    total = None
    comps: dict[str, Tensor] = {}
    names = [t.name for t in terms]
    for i, term in enumerate(terms):
        prefix = "" if len(terms) == 1 else (f"{term.name}." if names.count(term.name) == 1 else f"{term.name}{i}.")
        for cname, w, value in get_method(term.name).step(batch, term.params):
            comps[prefix + cname] = value
            piece = (term.weight * w) * value
            total = piece if total is None else total + piece
    if ce_weight > 0:
        if "ce" not in comps:
            comps["ce"] = label_loss(batch.task, batch.student_logits, batch.targets)
        total = ce_weight * comps["ce"] if total is None else total + ce_weight * comps["ce"]
    if total is None:
        raise ValueError(
            f"The objective of terms {names} gave no loss component and ce_weight is 0: "
            f"give a term with a component or a ce_weight > 0."
        )
    return total, comps


def fit_problems(
    config: JobConfig,
    task: str,
    student_kind: str,
    teacher_kind: str,
    student_layers: list[str],
    teacher_layers: list[str],
) -> list[str]:
    """Reasons why the objective does not fit this pair (empty when it does)."""
    p = []
    if task == "encoder" and (config.ce_weight or 0) > 0:  # unset: the runner uses 0 on encoder tasks
        p.append("an 'encoder' task has no labels: set ce_weight to 0 (the hard-label loss has nothing to fit)")
    for term in config.resolved_terms():
        method = get_method(term.name)
        if task not in method.tasks:
            p.append(misfit_message(method, task))
        elif method.fit is not None:
            p += method.fit(task, term.params)
        if method.uses_layers:
            p += _layer_problems(method.name, term.params["layers"], student_layers, teacher_layers)
        if method.teacher_layers is not None:
            missing = [b for b in method.teacher_layers(term.params) if b not in teacher_layers]
            if missing:
                chain = (
                    f": '{method.name}' runs as a chain of runs; start it with `python -m kdcore distill "
                    f"--objective {method.name}` or kdcore.jobs.chain.run_chain, which build its teachers"
                )
                p.append(
                    f"objective '{method.name}' reads teacher layer {missing[0]!r}, which the teacher does not "
                    f"have{chain if method.chain else ''}"
                )
    return p


def _layer_problems(name: str, layers: dict, student_layers: list[str], teacher_layers: list[str]) -> list[str]:
    p = []
    sides = (("student", list(layers), student_layers), ("teacher", list(layers.values()), teacher_layers))
    for who, mapped, known in sides:
        listed = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
        p += [
            f"objective '{name}' maps {who} layer {layer!r}, which the {who} does not have (its layers: {listed})"
            for layer in mapped
            if layer not in known
        ]
    return p


def feature_shape_problems(terms: list[LossTerm], s_feats: dict[str, Tensor], t_feats: dict[str, Tensor]) -> list[str]:
    """Checks that need the features' shapes (from a probe forward pass)."""
    p = []
    for term in terms:
        method = get_method(term.name)
        if method.shape_check is not None:
            p += method.shape_check(term.params, s_feats, t_feats)
    return p


def build_projectors(terms: list[LossTerm], s_feats: dict[str, Tensor], t_feats: dict[str, Tensor]) -> nn.ModuleDict:
    """The learned parts of every term's method (Method.modules: FitNets' projectors, ...), trained with the student."""
    mods = nn.ModuleDict()
    for term in terms:
        make = get_method(term.name).modules
        if make is not None:
            mods.update(make(term.params, s_feats, t_feats))
    return mods
