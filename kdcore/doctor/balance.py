"""The distillation term against the hard-label CE: the ratio of the two weighted terms' gradient
norms on the student's parameters, ‖∇(KD part)‖ / ‖∇(CE part)‖, measured on a few training batches
with the student as the run started it (fresh init with the run's seed) and as it ended.

Hinton et al. 2015 (arXiv 1503.02531) multiply the soft term by T² so that its gradients stay
comparable to CE's across temperatures; this check measures whether they actually are."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding
from kdcore.jobs.objectives import StepTensors, build_projectors, compute_loss, feature_layers, needs_attention
from kdcore.jobs.teacher_cache import compute_teacher_outputs

if TYPE_CHECKING:
    from kdcore.adapters.base import ModelAdapter

NEGLIGIBLE = 0.05  # KD gradient below 5 % of CE's: the run is CE training in disguise
DOMINANT = 100.0  # KD gradient above 100× CE's: the labels have no say
_BATCHES = 2
BATCH_LOGITS = 2**22  # a replayed batch's logits at most (LMs: fewer sequences for a large vocabulary)
REPLAY_LOGITS = 2**24  # ... and all replayed batches' logits together


def _squared_norm(grads: tuple[torch.Tensor | None, ...]) -> float:
    """Σ‖g‖² over a gradient per parameter, in float64, one parameter at a time."""
    return sum(float(torch.linalg.vector_norm(g, dtype=torch.float64) ** 2) for g in grads if g is not None)


def _replay(ctx: Context) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(inputs, targets, batch size, batches) replayed: the run's batch size (at most 128) and 2 batches,
    fewer for a large vocabulary (BATCH_LOGITS per batch, REPLAY_LOGITS in all), and for a causal LM whose
    single sequence is over budget its prefix (the outputs on a prefix depend on the prefix alone)."""
    x_all, y_all = ctx.train_probe
    row = max(ctx.row_logits(x_all), 1)
    bs = min(ctx.config.batch_size, 128, max(1, BATCH_LOGITS // row))
    batches = min(_BATCHES, max(1, REPLAY_LOGITS // (bs * row)))
    if ctx.task == "causal_lm" and x_all.dim() == 2 and bs * row > BATCH_LOGITS:
        keep = max(1, BATCH_LOGITS // (bs * (row // max(x_all.shape[1], 1))))  # positions
        x_all, y_all = x_all[:, :keep], y_all[:, :keep]
    return x_all, y_all, bs, batches


def _ratio(ctx: Context, student: ModelAdapter) -> tuple[float, float]:
    """(‖∇ KD part‖, ‖∇ CE part‖) summed over a few batches of the training probe."""
    x_all, y_all, bs, batches = _replay(ctx)
    teacher_out = ctx.notes.setdefault("_balance_teacher", {})  # the same batches at the start and the end
    s_layers, t_layers = feature_layers(ctx.terms)
    kd_sq = ce_sq = 0.0
    model = student.model
    was = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        for b in range(batches):
            x, y = x_all[b * bs : (b + 1) * bs], y_all[b * bs : (b + 1) * bs]
            if x.shape[0] == 0:
                break
            if b not in teacher_out:
                teacher_out[b] = compute_teacher_outputs(ctx.teacher, x, t_layers)
            t_logits, t_feats = teacher_out[b]
            s_logits, s_feats = student.forward_features(x, s_layers)
            proj = None
            if s_layers:
                with torch.random.fork_rng():
                    torch.manual_seed(ctx.config.seed + 1)
                    proj = build_projectors(ctx.terms, {k: v.detach() for k, v in s_feats.items()}, t_feats)
            total, comps = compute_loss(
                ctx.terms, ctx.ce_weight, StepTensors(ctx.task, s_logits, t_logits, y, s_feats, t_feats, proj)
            )
            names = list(comps)
            weights = torch.autograd.grad(total, [comps[n] for n in names], retain_graph=True, allow_unused=True)
            w_ce = (
                float(weights[names.index("ce")]) if "ce" in names and weights[names.index("ce")] is not None else 0.0
            )
            if w_ce <= 0:
                raise Skip("the objective gives the hard-label CE no weight (nothing to balance against)")
            ce_part = w_ce * comps["ce"]
            kd_part = total - ce_part
            params = [p for p in model.parameters() if p.requires_grad]
            ce_sq += _squared_norm(torch.autograd.grad(ce_part, params, retain_graph=True, allow_unused=True))
            kd_sq += _squared_norm(
                torch.autograd.grad(kd_part, params, allow_unused=True)
            )  # one gradient held at a time
    finally:
        for m, t in was:
            m.training = t
    return math.sqrt(kd_sq), math.sqrt(ce_sq)


def _measure(ctx: Context) -> dict:
    if "_balance" in ctx.notes:
        return ctx.notes["_balance"]
    if not ctx.terms or all(t.name in ("ce", "ls") for t in ctx.terms):
        raise Skip("the objective has no distillation term")
    if needs_attention(ctx.terms):
        raise Skip("attention objectives are not replayed")
    ctx.require("teacher", "student", "dataset")
    start = ctx.student.clone(reinit=True, seed=ctx.config.seed)
    kd0, ce0 = _ratio(ctx, start)
    kd1, ce1 = _ratio(ctx, ctx.student)
    out = {
        "grad_norm_kd_start": kd0,
        "grad_norm_ce_start": ce0,
        "ratio_start": kd0 / ce0 if ce0 > 0 else math.inf,
        "grad_norm_kd_end": kd1,
        "grad_norm_ce_end": ce1,
        "ratio_end": kd1 / ce1 if ce1 > 0 else math.inf,
    }
    ctx.notes["_balance"] = out
    return out


def _evidence(ctx: Context, m: dict) -> dict:
    lam = next((t.params["lam"] for t in ctx.terms if "lam" in t.params), None)
    ev = {
        "kd_to_ce_grad_ratio_start": m["ratio_start"],
        "kd_to_ce_grad_ratio_end": m["ratio_end"],
        "grad_norm_kd_start": m["grad_norm_kd_start"],
        "grad_norm_ce_start": m["grad_norm_ce_start"],
        "ce_weight": ctx.ce_weight,
        "temperature": ctx.temperature,
    }
    if lam is not None:
        ev["lam"] = float(lam)
    return ev


def _suggestion(ctx: Context, ratio: float) -> str:
    """A weight change that would bring the ratio near 1 (the ratio scales with the weights' odds)."""
    kd = next((t for t in ctx.terms if t.name == "kd"), None)
    if kd is not None and 0 < kd.params["lam"] < 1 and ctx.config.ce_weight in (None, 0):
        odds = kd.params["lam"] / (1 - kd.params["lam"]) / ratio
        return f"set lam to about {fmt(odds / (1 + odds), 2)} (now {fmt(kd.params['lam'], 2)})"
    return f"multiply the distillation weight by about {fmt(1 / ratio, 2)} (or the CE weight by {fmt(ratio, 2)})"


def _figure(m: dict) -> FigureData:
    return FigureData(
        "bars",
        "Gradient norm on the student, per loss part",
        ["start of run", "end of run"],
        {
            "KD part": [m["grad_norm_kd_start"], m["grad_norm_kd_end"]],
            "CE part": [m["grad_norm_ce_start"], m["grad_norm_ce_end"]],
        },
        y_title="‖∇θ‖₂",
    )


def check_kd_negligible(ctx: Context) -> Finding | None:
    m = _measure(ctx)
    if m["ratio_start"] >= NEGLIGIBLE:
        return None
    return Finding(
        "balance.kd_negligible",
        "warning",
        f"The distillation term is negligible: its gradient is {fmt(100 * m['ratio_start'], 2)} % of "
        f"the CE term's, so the student is trained on the hard labels alone.",
        _evidence(ctx, m),
        f"Give the teacher a say: {_suggestion(ctx, m['ratio_start'])}.",
        _figure(m),
    )


def check_kd_dominant(ctx: Context) -> Finding | None:
    m = _measure(ctx)
    if m["ratio_start"] <= DOMINANT:
        return None
    return Finding(
        "balance.kd_dominant",
        "warning",
        f"The distillation term drowns the labels: its gradient is {fmt(m['ratio_start'])}× the CE "
        f"term's, so the CE weight you set has no effect and the teacher's mistakes go uncorrected.",
        _evidence(ctx, m),
        f"Rebalance: {_suggestion(ctx, m['ratio_start'])}; or set ce_weight to 0 "
        f"if pure distillation is what you want.",
        _figure(m),
    )
