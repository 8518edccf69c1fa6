"""Evaluation inside a job: validation metrics at each epoch end, CKA and divergence probes at
checkpoints, attention weights for objectives that match them, and the teacher's eval scope.

CKA, accuracy, agreement and the eval scope come from their one home in kdcore (`kdcore.cka`,
`kdcore.metrics`, `kdcore.adapters.eval_mode`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.cka import linear_cka
from kdcore.jobs.config import LossTerm
from kdcore.jobs.objectives import label_loss
from kdcore.jobs.teacher_cache import compute_teacher_outputs
from kdcore.metrics import accuracy, agreement


def _batched_logits(adapter: ModelAdapter, inputs: Tensor, device: torch.device | str, batch: int = 512) -> Tensor:
    out = [adapter.logits(inputs[i : i + batch].to(device)) for i in range(0, inputs.shape[0], batch)]
    return torch.cat(out)


def forward_with_attentions(adapter: ModelAdapter, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(logits, per-layer attention [B, H, L, L]) in one forward pass, with the graph kept."""
    if callable(getattr(adapter, "forward_with_attentions", None)):  # Hugging Face adapters: masks, pooling
        return adapter.forward_with_attentions(x)  # type: ignore[attr-defined]
    model = adapter.model
    both = getattr(model, "forward_with_attentions", None)
    if callable(both):
        logits, atts = both(x)
        return logits, list(atts)
    if hasattr(model, "config") and hasattr(model.config, "output_attentions"):
        out = model(input_ids=x, output_attentions=True)
        if out.attentions and all(a is not None for a in out.attentions):
            return out.logits, list(out.attentions)
    raise ValueError(
        f"objective 'attn_kl' needs attention weights, but {adapter.name} does not return them "
        f"(a model with forward_with_attentions, or a Hugging Face model with eager attention)."
    )


def validation_metrics(
    task: str, logits: Tensor, targets: Tensor, teacher_logits: Tensor, projector: Any = None
) -> dict[str, float]:
    """val_loss, val_acc and val_agreement (top-1, or per-label sign for multilabel) of the student's logits;
    for an encoder task, the embedding metrics of `encoder_metrics`."""
    if task == "encoder":
        return encoder_metrics(logits, teacher_logits, projector)
    return {
        "val_loss": float(label_loss(task, logits, targets)),
        "val_acc": accuracy(logits, targets, task=task),
        "val_agreement": agreement(logits, teacher_logits, task=task),
    }


def encoder_metrics(student: Tensor, teacher: Tensor, projector: Any = None) -> dict[str, float]:
    """Pooled embeddings of the validation set, student [N, D_s] and teacher [N, D_t]:
    val_cka, linear CKA of the two (any widths); val_cos, the mean cosine of g(e_s) and e_t and
    val_loss = 1 − val_cos, where g is the objective's projector, or the identity when the widths agree."""
    out = {"val_cka": linear_cka(student, teacher)}
    s = student.float()
    if projector is not None:
        with torch.no_grad():
            s = projector(s.to(next(projector.parameters()).device)).to(teacher.device)
    if s.shape == teacher.shape:
        cos = torch.nn.functional.cosine_similarity(s.double(), teacher.double(), dim=1, eps=1e-8)
        out.update(val_cos=float(cos.mean()), val_loss=float(1.0 - cos.mean()))
    return out


def teacher_metrics(task: str, teacher_logits: Tensor, targets: Tensor) -> dict[str, float]:
    """The teacher's validation accuracy and loss (logged once, at step 0); none for an encoder task."""
    if task == "encoder":
        return {}
    return {
        "teacher_val_acc": accuracy(teacher_logits, targets, task=task),
        "teacher_val_loss": float(label_loss(task, teacher_logits, targets)),
    }


def probe_metrics(
    student: ModelAdapter, teacher: ModelAdapter, x: Tensor, y: Tensor, task: str, terms: list[LossTerm]
) -> dict[str, float]:
    """CKA of the student's layers to the teacher's, and the divergence components, on a probe batch
    x [n, ...] with targets y. The student is left in train mode, the teacher in its own mode.
    The job streams a causal LM's probe over a few sequences at a time instead (``lm_eval.checkpoint_probes``)."""
    out: dict[str, float] = {}
    s_names, t_names = list(student.default_layers()), list(teacher.default_layers())
    student.model.eval()
    with eval_mode(teacher.model, no_grad=True):
        s_logits, s_feats = student.forward_features(x, s_names) if s_names else (student.logits(x), {})
        t_logits, t_feats = compute_teacher_outputs(teacher, x, t_names)
    for sn in s_names:
        for tn in t_names:
            out[f"cka/{sn}|{tn}"] = linear_cka(s_feats[sn], t_feats[tn])
    out.update(divergence_probe(task, s_logits, t_logits, y, terms))
    student.model.train()
    return out


def probe_temperature(terms: list[LossTerm]) -> float:
    """The probes' temperature: the first term's that has one, else 1."""
    return next((float(term.params["temperature"]) for term in terms if "temperature" in term.params), 1.0)


def divergence_probe(task: str, s: Tensor, t: Tensor, y: Tensor, terms: list[LossTerm]) -> dict[str, float]:
    """KL and its decompositions between student and teacher on the probe batch (T of the job's first
    term, else 1)."""
    T = probe_temperature(terms)
    out: dict[str, float] = {}
    if task == "causal_lm":
        from kdcore.divergences import divergence_loss

        mask = y != -100
        for kind in ("fkl", "rkl"):
            out[f"div/{kind}"] = float(divergence_loss(s, t, kind, mask=mask, temperature=T))
        return out
    from kdcore.losses import cakd_components, dkd_components, strong_set

    if task == "classification":
        d = dkd_components(s, t, y, temperature=T)
        out.update(
            {"div/kl": float(d["kl"].mean()), "div/tckd": float(d["tckd"].mean()), "div/nckd": float(d["nckd"].mean())}
        )
    cakd = next((term for term in terms if term.name == "cakd"), None)
    if cakd is not None or task == "multilabel":
        p: dict[str, Any] = cakd.params if cakd is not None else {"rule": "labels", "k": None, "tau": None}
        strong = strong_set(
            t,
            rule=p["rule"],
            labels=y if p["rule"] in ("target", "labels") else None,
            k=p["k"],
            tau=p["tau"],
            temperature=T,
        )
        c = cakd_components(s, t, strong, temperature=T)
        out.update({f"div/{k}": float(c[k].mean()) for k in ("kl", "bcd", "scd", "wcd")})
    return out
