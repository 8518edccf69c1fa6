"""Teacher and student fed differently: the teacher's output for a sample must depend on that sample
alone, the same every time. A random augmentation inside the teacher's forward (or a teacher fed from
its own, differently augmented loader) makes two passes disagree; a teacher whose outputs depend on
the batch's order (its inputs re-ordered, batch statistics) gives sample i the soft label of another."""

from __future__ import annotations

import torch
from torch import Tensor

from kdcore.doctor.context import Context, fmt
from kdcore.doctor.findings import Finding
from kdcore.metrics import disagreement

TOL = 1e-4  # largest logit change tolerated between equivalent passes (float rounding)
PASS_LOGITS = 2**22  # logits per pass at most (a large vocabulary: 2 sequences, cut to a prefix; 16 MB)


def _inputs(ctx: Context) -> Tensor:
    """The inputs of the three passes: the first 64 probe inputs or, for a large vocabulary, as many
    sequences as fit PASS_LOGITS (at least 2, so that a re-ordering exists), cut to a
    prefix when even 2 do not fit (a causal LM's outputs on a prefix depend on the prefix alone)."""
    x = ctx.train_probe[0]
    n = max(2, min(64, PASS_LOGITS // max(ctx.row_logits(x), 1)))
    x = x[:n]
    if ctx.task == "causal_lm" and x.dim() == 2 and n * ctx.row_logits(x) > PASS_LOGITS:
        width = ctx.row_logits(x) // max(x.shape[1], 1)  # the vocabulary
        x = x[:, : max(1, PASS_LOGITS // (n * width))]
    return x


def check_teacher_inputs(ctx: Context) -> Finding | None:
    ctx.require("teacher", "dataset")
    x = _inputs(ctx)
    n = x.shape[0]
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=g)
    inv = torch.argsort(perm)
    with torch.random.fork_rng():
        a = ctx.teacher.logits(x).float()
        b = ctx.teacher.logits(x).float()
        c = ctx.teacher.logits(x[perm]).float()[inv]
    scale = float(a.abs().max()) or 1.0
    repeat = float((a - b).abs().max()) / scale
    order = float((a - c).abs().max()) / scale
    if repeat <= TOL and order <= TOL:
        return None
    flip_r, flip_o = disagreement(a, b), disagreement(a, c)  # top-1 changes
    what = (
        "its output changes between two passes over the same inputs (random augmentation or noise on the "
        "teacher's side)"
        if repeat > TOL
        else "its output for a sample changes when the batch is re-ordered (its inputs are shuffled or augmented "
        "apart from the student's, or it uses batch statistics)"
    )
    return Finding(
        "inputs.teacher_inputs",
        "error",
        f"Teacher and student do not see the same inputs: {what}, so the student is taught soft labels "
        f"of other inputs.",
        {
            "relative_change_same_batch": repeat,
            "relative_change_reordered_batch": order,
            "top1_changed_same_batch": flip_r,
            "top1_changed_reordered_batch": flip_o,
            "samples": n,
        },
        "Feed the teacher exactly the student's batch, after the same augmentation (compute both from one "
        "augmented tensor, or augment only outside both models), keep the teacher in eval mode, and "
        f"never shuffle one side alone (largest relative logit change seen: {fmt(max(repeat, order))}).",
        None,
    )
