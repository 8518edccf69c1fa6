"""Objective name -> how a training step computes its loss components (kdcore.losses, kdcore.divergences).

Each objective is a pure function `(batch: StepTensors, params) -> list[Component]`; a component
is `(name, weight, value)` with `value` a scalar tensor as the method defines it (T² included where
METHODS.md says so) and `weight` what multiplies it in the objective. The job's loss is

    loss = Σ_terms term.weight · Σ_components weight · value  +  ce_weight · CE(labels)

and the runner records every component's value separately, so views and the doctor can plot them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.jobs.config import JobConfig, LossTerm

IGNORE_INDEX = -100
CLASSIFICATION_ONLY = ("kd", "dkd", "cakd", "normkd", "ls")
LM_ONLY = ("token", "attn_kl")
FEATURE_OBJECTIVES = ("feature_l2", "at")


@dataclass
class StepTensors:
    """What one training step hands to an objective."""
    task: str                                   # "classification" | "multilabel" | "causal_lm"
    student_logits: Tensor                      # [B, C] or [B, L, V]
    teacher_logits: Tensor                      # same shape (no graph)
    targets: Tensor                             # [B] class ids | [B, C] multi-hot | [B, L] next ids (-100: none)
    student_feats: dict[str, Tensor] = field(default_factory=dict)   # layer -> [B, ...] with graph
    teacher_feats: dict[str, Tensor] = field(default_factory=dict)   # layer -> [B, ...] no graph
    projectors: nn.ModuleDict | None = None     # "<student_layer>" -> projector to the teacher width
    student_attn: list[Tensor] | None = None    # per layer [B, H, L, L] with graph
    teacher_attn: list[Tensor] | None = None    # per layer [B, H, L, L]


Component = tuple[str, float, Tensor]


def label_loss(task: str, logits: Tensor, targets: Tensor) -> Tensor:
    """The hard-label loss of a task: CE (classification), BCE-with-logits (multilabel),
    next-token CE over the positions whose target is not -100 (causal LM)."""
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    if task == "causal_lm":
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits.float(), targets)


def _ce(b: StepTensors, p: dict) -> list[Component]:
    return [("ce", 1.0, label_loss(b.task, b.student_logits, b.targets))]


def _kd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import kd_components
    T, lam = float(p["temperature"]), float(p["lam"])
    parts = kd_components(b.student_logits, b.teacher_logits, None, temperature=T, standardize=p["standardize"])
    return [("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets)),
            ("kl", lam, T * T * parts["kl"].mean())]


def _dkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import dkd_components
    T = float(p["temperature"])
    parts = dkd_components(b.student_logits, b.teacher_logits, b.targets, temperature=T)
    return [("tckd", float(p["alpha"]), T * T * parts["tckd"].mean()),
            ("nckd", float(p["beta"]), T * T * parts["nckd"].mean())]


def _cakd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import cakd_components, strong_set
    T = float(p["temperature"])
    strong = strong_set(b.teacher_logits, rule=p["rule"], labels=b.targets if p["rule"] in ("target", "labels") else None,
                        k=p["k"], tau=p["tau"], temperature=T)                                         # [B, C] bool
    parts = cakd_components(b.student_logits, b.teacher_logits, strong, temperature=T)
    return [("bcd", 1.0, T * T * parts["bcd"].mean()),
            ("scd", float(p["alpha"]), T * T * parts["scd"].mean()),
            ("wcd", float(p["beta"]), T * T * parts["wcd"].mean())]


def _normkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import normkd_loss
    return [("normkd", 1.0, normkd_loss(b.student_logits, b.teacher_logits, t_norm=float(p["t_norm"])))]


def _ls(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import label_smoothing_targets
    C = b.student_logits.shape[-1]
    q = label_smoothing_targets(b.targets, C, eps=float(p["eps"]))                  # [B, C]
    loss = -(q * torch.log_softmax(b.student_logits.float(), dim=-1)).sum(-1).mean()
    return [("ls", 1.0, loss)]


def _feature_l2(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import feature_l2_loss
    out = []
    for s_name, t_name in p["layers"].items():
        proj = None if b.projectors is None or _key(s_name) not in b.projectors else b.projectors[_key(s_name)]
        fs, ft = b.student_feats[s_name], b.teacher_feats[t_name]
        if p.get("cosine"):
            gs = proj(fs) if proj is not None else fs
            val = (1 - F.cosine_similarity(gs.flatten(1).float(), ft.flatten(1).float(), dim=1)).mean()
        else:
            val = feature_l2_loss(fs, ft, proj)
        out.append((f"feat_l2/{s_name}", 1.0, val))
    return out


def _at(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import attention_transfer_loss
    return [(f"at/{s}", 1.0, attention_transfer_loss(b.student_feats[s], b.teacher_feats[t], p=p["p"]))
            for s, t in p["layers"].items()]


def _attn_kl(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import attention_kl_loss
    if not b.student_attn or not b.teacher_attn:
        raise ValueError("objective 'attn_kl' needs attention maps from both models; the adapters returned none.")
    layers = p.get("layers") or {str(len(b.student_attn) - 1): str(len(b.teacher_attn) - 1)}
    out = []
    for s, t in layers.items():
        sa, ta = b.student_attn[int(s)], b.teacher_attn[int(t)]                   # [B, H, L, L]
        if sa.shape[1] != ta.shape[1]:
            sa, ta = sa.mean(1, keepdim=True), ta.mean(1, keepdim=True)          # head-averaged maps
        out.append((f"attn_kl/{s}", 1.0, attention_kl_loss(sa, ta)))
    return out


def _token(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.divergences import divergence_loss
    mask = b.targets != IGNORE_INDEX                                               # [B, L]
    params = {k: p[k] for k in ("temperature", "beta", "alpha", "mu")}
    return [(p["kind"], 1.0, divergence_loss(b.student_logits, b.teacher_logits, p["kind"], mask=mask, **params))]


OBJECTIVE_FNS: dict[str, Callable[[StepTensors, dict], list[Component]]] = {
    "ce": _ce, "kd": _kd, "dkd": _dkd, "cakd": _cakd, "normkd": _normkd, "ls": _ls,
    "feature_l2": _feature_l2, "at": _at, "attn_kl": _attn_kl, "token": _token,
}


def _key(layer: str) -> str:
    """ModuleDict keys may not contain '.'."""
    return layer.replace(".", "__")


def feature_layers(terms: list[LossTerm]) -> tuple[list[str], list[str]]:
    """(student layers, teacher layers) whose features the terms need, in order, without repeats."""
    s, t = [], []
    for term in terms:
        if term.name in FEATURE_OBJECTIVES:
            for a, b in term.params["layers"].items():
                s += [a] if a not in s else []
                t += [b] if b not in t else []
    return s, t


def needs_attention(terms: list[LossTerm]) -> bool:
    return any(t.name == "attn_kl" for t in terms)


def compute_loss(terms: list[LossTerm], ce_weight: float, batch: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted loss and every component (name -> scalar tensor, unweighted as the method defines it)."""
    total = None
    comps: dict[str, Tensor] = {}
    names = [t.name for t in terms]
    for i, term in enumerate(terms):
        prefix = "" if len(terms) == 1 else (f"{term.name}." if names.count(term.name) == 1 else f"{term.name}{i}.")
        for cname, w, value in OBJECTIVE_FNS[term.name](batch, term.params):
            comps[prefix + cname] = value
            piece = (term.weight * w) * value
            total = piece if total is None else total + piece
    if ce_weight > 0 and "ce" not in comps:
        comps["ce"] = label_loss(batch.task, batch.student_logits, batch.targets)
        total = ce_weight * comps["ce"] if total is None else total + ce_weight * comps["ce"]
    elif ce_weight > 0:
        total = total + ce_weight * comps["ce"]
    return total, comps


def fit_problems(config: JobConfig, task: str, student_kind: str, teacher_kind: str,
                 student_layers: list[str], teacher_layers: list[str]) -> list[str]:
    """Reasons why the objective does not fit this pair (empty when it does)."""
    p = []
    for term in config.resolved_terms():
        n = term.name
        if n in CLASSIFICATION_ONLY and task == "causal_lm":
            p.append(f"objective '{n}' is a classification loss, but the pair is a causal language model: "
                     f"use objective 'token' (a token-level divergence such as kind='fkl') instead")
        if n in LM_ONLY and task != "causal_lm":
            p.append(f"objective '{n}' is for causal language models, but the pair's task is '{task}': "
                     f"use 'kd', 'dkd' or 'cakd' instead")
        if task == "multilabel" and (n in ("dkd", "ls") or n == "cakd" and term.params["rule"] == "target"):
            p.append(f"objective '{n}' needs one target class per sample, but the pair is multi-label: "
                     f"use 'cakd' with rule 'labels', or 'kd'")
        if n == "cakd" and term.params["rule"] == "labels" and task != "multilabel":
            p.append(f"CAKD's strong-set rule 'labels' needs multi-hot labels, but the pair's task is '{task}': "
                     f"use rule 'target', 'topk' or 'mass'")
        if n in FEATURE_OBJECTIVES:
            for s, t in term.params["layers"].items():
                if s not in student_layers:
                    p.append(f"objective '{n}' maps student layer {s!r}, which the student does not have "
                             f"(its layers: {', '.join(student_layers[:12])}{' ...' if len(student_layers) > 12 else ''})")
                if t not in teacher_layers:
                    p.append(f"objective '{n}' maps teacher layer {t!r}, which the teacher does not have "
                             f"(its layers: {', '.join(teacher_layers[:12])}{' ...' if len(teacher_layers) > 12 else ''})")
    return p


def feature_shape_problems(terms: list[LossTerm], s_feats: dict[str, Tensor], t_feats: dict[str, Tensor]) -> list[str]:
    """Checks that need the features' shapes (from a probe forward pass)."""
    p = []
    for term in terms:
        if term.name == "at":
            for s, t in term.params["layers"].items():
                for who, name, f in (("student", s, s_feats[s]), ("teacher", t, t_feats[t])):
                    if f.dim() != 4:
                        p.append(f"attention transfer needs conv features [B, C, H, W], but the {who}'s layer "
                                 f"{name!r} gives shape {tuple(f.shape)}: map conv layers instead")
        if term.name == "feature_l2" and term.params.get("projector") == "none":
            for s, t in term.params["layers"].items():
                if s_feats[s].shape[1:] != t_feats[t].shape[1:]:
                    p.append(f"feature_l2 with projector 'none' needs equal feature shapes; student {s!r} gives "
                             f"{tuple(s_feats[s].shape[1:])}, teacher {t!r} gives {tuple(t_feats[t].shape[1:])}: "
                             f"use projector 'auto'")
    return p


def build_projectors(terms: list[LossTerm], s_feats: dict[str, Tensor], t_feats: dict[str, Tensor]) -> nn.ModuleDict:
    """A learned linear (or 1×1 conv) projector per mapped student layer whose width differs (FitNets)."""
    mods = nn.ModuleDict()
    for term in terms:
        if term.name != "feature_l2" or term.params.get("projector") == "none":
            continue
        for s, t in term.params["layers"].items():
            fs, ft = s_feats[s], t_feats[t]
            if fs.shape[1:] == ft.shape[1:] and term.params.get("projector") != "linear":
                continue
            mods[_key(s)] = _projector(fs, ft)
    return mods


def _projector(fs: Tensor, ft: Tensor) -> nn.Module:
    try:
        from kdcore.losses import make_projector
    except ImportError:  # pragma: no cover - losses without a projector factory
        make_projector = None
    if make_projector is not None:
        return make_projector(tuple(fs.shape), tuple(ft.shape))
    if fs.dim() == 4:  # [B, C, H, W]
        return nn.Conv2d(fs.shape[1], ft.shape[1], kernel_size=1, bias=False)
    return nn.Linear(fs.shape[-1], ft.shape[-1], bias=False)
