"""Language-model pitfalls: loss counted on padding, vocabularies that differ or are padded,
different tokenizers, JSD with β near 0 or 1 (Agarwal et al. 2024, GKD, arXiv 2306.13649: the
divergence tends to 0 at both ends), and different temperatures for teacher and student."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import Finding
from kdcore.doctor.streams import nll_accuracy, tail_mass

if TYPE_CHECKING:
    from kdcore.adapters.base import ModelAdapter

PAD_SHARE = 0.02  # padding positions at or above this share of the counted positions: flagged
PAD_SEQUENCES = 0.3  # a token ending at least this share of sequences in a run of ≥ 2 is padding
TAIL_MASS = 1e-3  # teacher probability on never-used vocabulary entries at or above this: flagged
JSD_EDGE = 0.1  # β ≤ 0.1 or β ≥ 0.9: near the ends
TEMP_REL = 0.01  # teacher and student temperatures differing by more than 1 %
GATE_EDGE = 0.02  # a hybrid gate g outside [0.02, 0.98] has saturated (methods/15 §15.2)


def _lm(ctx: Context) -> None:
    if ctx.task != "causal_lm":
        raise Skip("applies to causal language models only")


def _pad_id(ctx: Context, x: torch.Tensor) -> int | None:
    """The padding token: the dataset's or tokenizer's pad id, else the token that ends many sequences in a run."""
    for owner in (ctx.dataset, getattr(ctx.dataset, "tokenizer", None)):
        pid = getattr(owner, "pad_id", None) if owner is not None else None
        if isinstance(pid, int):
            return pid
    last = x[:, -1]  # [N]
    run2 = last == x[:, -2] if x.shape[1] > 1 else torch.zeros_like(last, dtype=torch.bool)
    if not bool(run2.any()):
        return None
    ids, counts = last[run2].unique(return_counts=True)
    best = int(counts.argmax())
    return int(ids[best]) if counts[best] >= PAD_SEQUENCES * x.shape[0] else None


def check_padding_counted(ctx: Context) -> Finding | None:
    _lm(ctx)
    x, y = ctx.train_probe  # [N, L], [N, L]
    pad = _pad_id(ctx, x)
    if pad is None:
        return None
    # trailing padding: positions from the end of each sequence while the input is the pad token
    is_pad = (x == pad).flip(1).long().cumprod(1).flip(1).bool()  # [N, L]
    counted = is_pad & (y != -100)
    kept = int((y != -100).sum())
    share = float(counted.sum()) / max(kept, 1)
    if share < PAD_SHARE:
        return None
    return Finding(
        "lm.padding_counted",
        "error",
        f"The loss counts padding: {fmt(100 * share, 3)} % of the positions it averages over are padding "
        f"(token {pad}), so the student learns to predict padding and every average is diluted.",
        {
            "pad_token": pad,
            "padding_share_of_counted_positions": share,
            "sequences_with_counted_padding": int(counted.any(1).sum()),
            "sequences_checked": int(x.shape[0]),
        },
        "Set the targets of padded positions to -100 (labels[attention_mask == 0] = -100) so the mask leaves them out.",
        None,
    )


def _tokenizer_size(ctx: Context) -> int | None:
    for owner in (getattr(ctx.dataset, "tokenizer", None), getattr(ctx.teacher, "tokenizer", None)):
        n = getattr(owner, "vocab_size", None) if owner is not None else None
        if isinstance(n, int):
            return n
    return None


def check_vocab_mismatch(ctx: Context) -> Finding | None:
    _lm(ctx)
    ctx.require("teacher", "student")
    vt, vs = ctx.teacher.output_size, ctx.student.output_size
    if vt != vs:
        return Finding(
            "lm.vocab_mismatch",
            "error",
            f"The vocabularies differ: the teacher predicts {vt} tokens, the student {vs}; token-level "
            f"divergences compare entries by id, so they would compare unrelated tokens.",
            {"teacher_vocab": vt, "student_vocab": vs},
            "Use models that share a tokenizer, or the 'uld' divergence (token kind 'uld', which compares "
            "sorted probabilities across vocabularies); if one vocabulary is only padded, truncate both "
            "to the shared ids.",
            None,
        )
    return None


def check_padded_vocab(ctx: Context) -> Finding | None:
    _lm(ctx)
    ctx.require("teacher", "dataset")
    vt = ctx.teacher.output_size
    if ctx.student is not None and ctx.student.output_size != vt:
        raise Skip("the vocabularies differ (see lm.vocab_mismatch)")
    tok = _tokenizer_size(ctx)
    train = ctx.dataset.split("train")
    ids = torch.cat([train.inputs.flatten(), train.targets[train.targets != -100].flatten()])
    used = torch.zeros(vt, dtype=torch.bool)
    used[ids[(ids >= 0) & (ids < vt)]] = True
    unused_from = int(used.nonzero().max()) + 1 if bool(used.any()) else 0
    tail = vt - unused_from if tok is None else max(vt - tok, vt - unused_from)
    start = vt - tail
    if tail <= 0:
        return None
    T = ctx.temperature or 1.0
    mass_t = tail_mass(ctx, "teacher", start, T)  # streamed over the probe's rows
    if mass_t < TAIL_MASS and (tok is None or tok >= vt):
        return None
    ev = {"model_vocab": vt, "tokenizer_vocab": tok, "unused_tail_size": tail, "teacher_mass_on_tail": mass_t}
    if ctx.student is not None:
        ev["student_mass_on_tail"] = tail_mass(ctx, "student", start, T)
    return Finding(
        "lm.padded_vocab",
        "warning",
        f"The vocabulary is padded: ids {start}..{vt - 1} never occur in the data, yet the teacher puts "
        f"{fmt(100 * mass_t, 3)} % of its probability there, and the student is taught to copy it.",
        ev,
        f"Mask the padded entries before the softmax (set logits[..., {start}:] to -inf for both "
        f"models) or slice the logits to the first {start} ids.",
        None,
    )


def _vocab_dict(adapter: ModelAdapter | None) -> dict | None:
    tok = getattr(adapter, "tokenizer", None)
    getter = getattr(tok, "get_vocab", None)
    return dict(getter()) if callable(getter) else None


def check_tokenizers(ctx: Context) -> Finding | None:
    _lm(ctx)
    ctx.require("teacher", "student")
    vt, vs = _vocab_dict(ctx.teacher), _vocab_dict(ctx.student)
    if vt is not None and vs is not None and vt != vs:
        moved = sum(1 for k, v in vt.items() if vs.get(k) != v)
        return Finding(
            "lm.tokenizers",
            "error",
            "Teacher and student use different tokenizers: the same id means a different token to each.",
            {"teacher_tokens": len(vt), "student_tokens": len(vs), "tokens_with_other_id": moved},
            "Distil between models that share a tokenizer, or use the 'uld' divergence for cross-tokenizer "
            "distillation.",
            None,
        )
    ctx.require("dataset")
    nll, acc = nll_accuracy(ctx, "teacher", "val")  # streamed over the probe's rows
    uniform = math.log(ctx.logits("teacher", "val").shape[-1])
    if nll < uniform:
        return None
    ev = {"teacher_nll": nll, "uniform_nll": uniform, "teacher_token_accuracy": acc}
    if ctx.student is not None:
        ev["student_token_accuracy"] = nll_accuracy(ctx, "student", "val")[1]
    return Finding(
        "lm.tokenizers",
        "error",
        f"The teacher does not understand the data's token ids: its next-token loss ({fmt(nll)} nats) is "
        f"no better than a uniform guess ({fmt(uniform)}). It was most likely trained with another "
        f"tokenizer (or is not trained).",
        ev,
        "Tokenize the data with the teacher's tokenizer and check that teacher and student share it; "
        "for different tokenizers use the 'uld' divergence.",
        None,
    )


def check_jsd_beta(ctx: Context) -> Finding | None:
    jsd = [t for t in ctx.terms if t.name == "token" and t.params.get("kind") == "jsd"]
    if not jsd:
        raise Skip("the objective uses no jsd term")
    beta = float(jsd[0].params["beta"])
    if JSD_EDGE < beta < 1 - JSD_EDGE:
        return None
    ev = {"beta": beta}
    if ctx.teacher is not None and ctx.student is not None and ctx.dataset is not None:
        from kdcore.divergences import divergence_loss

        x, y = ctx.train_probe
        s, t = ctx.logits("student", "train"), ctx.logits("teacher", "train")
        mask = y != -100
        ev["jsd_value"] = float(divergence_loss(s, t, "jsd", mask=mask, beta=beta))
        ev["fkl_value"] = float(divergence_loss(s, t, "fkl", mask=mask))
        ev["rkl_value"] = float(divergence_loss(s, t, "rkl", mask=mask))
    near = "fkl" if beta <= JSD_EDGE else "rkl"
    return Finding(
        "lm.jsd_beta",
        "warning",
        f"JSD with β = {fmt(beta)} is almost zero whatever the student does (it tends to 0 as β → 0 or 1), "
        f"so the distillation signal is tiny.",
        ev,
        f"Use β = 0.5, or the divergence β approaches in TRL's convention: kind '{near}'.",
        None,
    )


def _model_temperature(adapter: ModelAdapter | None) -> float:
    """A temperature the model applies to its own logits (attribute 'temperature' or 'logit_temperature'), else 1."""
    if adapter is None:
        return 1.0
    for obj in (adapter, getattr(adapter, "model", None)):
        for name in ("logit_temperature", "temperature"):
            v = getattr(obj, name, None)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
    return 1.0


def check_temperature_mismatch(ctx: Context) -> Finding | None:
    T = ctx.temperature
    if T is None:
        raise Skip("the objective uses no temperature")
    params = next(t.params for t in ctx.terms if "temperature" in t.params)
    t_side = float(params.get("teacher_temperature", T)) * _model_temperature(ctx.teacher)
    s_side = float(params.get("student_temperature", T)) * _model_temperature(ctx.student)
    if abs(t_side - s_side) <= TEMP_REL * max(t_side, s_side):
        return None
    return Finding(
        "lm.temperature_mismatch",
        "warning",
        f"Teacher and student are softened by different temperatures ({fmt(t_side)} and {fmt(s_side)}): "
        f"the student is pushed to match a distribution at another scale, and even a perfect copy of the "
        f"teacher keeps a non-zero loss.",
        {
            "teacher_temperature": t_side,
            "student_temperature": s_side,
            "config_temperature": T,
            "teacher_model_temperature": _model_temperature(ctx.teacher),
            "student_model_temperature": _model_temperature(ctx.student),
        },
        "Divide both models' logits by the same T (remove any temperature built into one model, and any "
        "separate teacher_/student_temperature setting).",
        None,
    )


def check_hybrid_gate(ctx: Context) -> Finding | None:
    """A learned hybrid gate g = σ(θ) that saturated: one of the two terms no longer trains (§15.2)."""
    _lm(ctx)
    if not any(t.name == "hybrid" and t.params.get("gate") == "learned" for t in ctx.terms):
        raise Skip("the objective has no learned hybrid gate")
    g = ctx.metric("step", "gate_g")
    if g is None:
        raise Skip("the run logged no gate values (gate_g)")
    last = float(g.iloc[-1])
    if GATE_EDGE <= last <= 1 - GATE_EDGE:
        return None
    kept, lost = ("token KL", "sentence NLL on ŷ") if last > 0.5 else ("sentence NLL on ŷ", "token KL")
    return Finding(
        "lm.hybrid_gate",
        "warning",
        f"The learned hybrid gate ended at g = {fmt(last)}: only the {kept} still trains, the {lost} has no weight. "
        f"A gate trained on the loss it weighs moves toward whichever term is smaller and saturates.",
        {"gate_g_last": last, "gate_g_first": float(g.iloc[0]), "steps": len(g)},
        "Use gate 'fixed' with the g you want (0.5 weighs both), or plain 'token' / 'seqkd' if one term is enough.",
        None,
    )
