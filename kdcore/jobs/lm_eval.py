"""Validation and checkpoint probes that stream over batches, so a causal LM's [N, L, V] logits are
never kept (issue #13 item 4).

For a causal LM the runner keeps of the teacher's validation outputs only what the metrics need:
its top-1 token per position [N, L] and its accuracy and loss (``TeacherVal``). The student's
validation metrics and the checkpoint probes (CKA, fkl/rkl) are computed a few sequences at a
time (about 2**24 logits per batch) and reduced at once. The values equal
``evaluation.validation_metrics`` / ``teacher_metrics`` / ``probe_metrics`` on the full logits.
Other tasks keep the full (small, [N, C]) teacher logits and use those functions unchanged
(``teacher_validation``, ``student_validation`` and ``checkpoint_probes`` pick the way by task).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.cka import linear_cka
from kdcore.jobs.config import LossTerm
from kdcore.jobs.evaluation import (
    _batched_logits,
    probe_metrics,
    probe_temperature,
    teacher_metrics,
    validation_metrics,
)
from kdcore.jobs.teacher_cache import compute_teacher_outputs

IGNORE_INDEX = -100
_ELEMENTS = 2**24  # logits per streamed batch (64 MiB of float32)


@dataclass
class TeacherVal:
    """What validation needs of the teacher: full logits (classifiers), or top-1 ids [N, L] (causal LMs)."""

    metrics: dict[str, float]  # teacher_val_acc, teacher_val_loss
    logits: Tensor | None = None  # [N, C] (not kept for causal LMs)
    top1: Tensor | None = None  # [N, L] the teacher's most likely next token (causal LMs)


def stream_rows(x: Tensor, vocab: int) -> int:
    """Sequences per streamed batch: about 2**24 logits, at least one sequence."""
    length = x.shape[1] if x.dim() > 1 else 1
    return max(1, _ELEMENTS // max(1, length * vocab))


def _lm_sums(logits: Tensor, y: Tensor) -> tuple[float, int, int, Tensor]:
    """(CE sum, kept positions, top-1 hits, top-1 ids [b, L]) of one batch of logits [b, L, V]."""
    top1 = logits.argmax(-1)  # [b, L]
    keep = y != IGNORE_INDEX
    ce = F.cross_entropy(logits.flatten(0, -2).float(), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return float(ce), int(keep.sum()), int((top1 == y)[keep].sum()), top1


def _stream(
    adapter: ModelAdapter, x: Tensor, y: Tensor, device: torch.device | str, rows: int | None
) -> Iterator[tuple[Tensor, Tensor, slice]]:
    """Per batch: (logits [b, L, V], targets [b, L], batch slice), eval mode, no grad."""
    rows = rows or stream_rows(x, adapter.output_size)
    for start in range(0, x.shape[0], rows):
        piece = slice(start, start + rows)
        yield adapter.logits(x[piece].to(device)), y[piece].to(device), piece


def _no_kept(where: str) -> ValueError:
    return ValueError(f"Every validation target is -100 ({where}): there is no position to score.")


def teacher_validation(
    teacher: ModelAdapter, x: Tensor, y: Tensor, task: str, device: torch.device | str, rows: int | None = None
) -> TeacherVal:
    """The teacher's validation outputs: streamed (top-1 and metrics) for a causal LM, else full logits."""
    with eval_mode(teacher.model):
        if task != "causal_lm":
            logits = _batched_logits(teacher, x, device)
            return TeacherVal(teacher_metrics(task, logits, y), logits=logits)
        ce, kept, hits, tops = 0.0, 0, 0, []
        for logits, yb, _ in _stream(teacher, x, y, device, rows):
            c, k, h, top1 = _lm_sums(logits, yb)
            ce, kept, hits = ce + c, kept + k, hits + h
            tops.append(top1)
    if kept == 0:
        raise _no_kept("teacher_validation")
    return TeacherVal({"teacher_val_acc": hits / kept, "teacher_val_loss": ce / kept}, top1=torch.cat(tops))


def student_validation(
    student: ModelAdapter,
    x: Tensor,
    y: Tensor,
    task: str,
    teacher: TeacherVal,
    device: torch.device | str,
    rows: int | None = None,
    projector: Any = None,
) -> dict[str, float]:
    """val_loss, val_acc and val_agreement of the student (eval mode, no grad), streamed for a causal LM
    (an encoder task: the embedding metrics, through the objective's projector when it has one)."""
    student.model.eval()
    with torch.no_grad():
        if task != "causal_lm":
            assert teacher.logits is not None
            return validation_metrics(task, _batched_logits(student, x, device), y, teacher.logits, projector)
        assert teacher.top1 is not None
        ce, kept, hits, agree = 0.0, 0, 0, 0
        for logits, yb, piece in _stream(student, x, y, device, rows):
            c, k, h, top1 = _lm_sums(logits, yb)
            ce, kept, hits = ce + c, kept + k, hits + h
            agree += int((top1 == teacher.top1[piece].to(top1.device)).sum())
    if kept == 0:
        raise _no_kept("student_validation")
    return {"val_loss": ce / kept, "val_acc": hits / kept, "val_agreement": agree / teacher.top1.numel()}


def checkpoint_probes(
    student: ModelAdapter, teacher: ModelAdapter, x: Tensor, y: Tensor, task: str, terms: list[LossTerm]
) -> dict[str, float]:
    """The checkpoint probes (CKA, divergences) on x [n, ...]: streamed for a causal LM
    (``lm_probe_metrics``), else ``evaluation.probe_metrics`` on the full logits."""
    if task == "causal_lm":
        return lm_probe_metrics(student, teacher, x, y, terms)
    return probe_metrics(student, teacher, x, y, task, terms)


def lm_probe_metrics(
    student: ModelAdapter, teacher: ModelAdapter, x: Tensor, y: Tensor, terms: list[LossTerm], rows: int | None = None
) -> dict[str, float]:
    """``probe_metrics`` of a causal LM, a few sequences at a time: CKA of every student layer to every
    teacher layer on the whole probe set, and the mean fkl/rkl over its kept positions."""
    from kdcore.divergences import token_divergence

    s_names, t_names = list(student.default_layers()), list(teacher.default_layers())
    temperature = probe_temperature(terms)
    feats: dict[str, list[Tensor]] = {key: [] for key in [f"s:{n}" for n in s_names] + [f"t:{n}" for n in t_names]}
    sums, kept = {"fkl": 0.0, "rkl": 0.0}, 0
    rows = rows or stream_rows(x, max(student.output_size, teacher.output_size))
    student.model.eval()
    with eval_mode(teacher.model, no_grad=True), torch.no_grad():
        for start in range(0, x.shape[0], rows):
            xb, yb = x[start : start + rows], y[start : start + rows]
            s_logits, s_feats = student.forward_features(xb, s_names) if s_names else (student.logits(xb), {})
            t_logits, t_feats = compute_teacher_outputs(teacher, xb, t_names)
            for n in s_names:
                feats[f"s:{n}"].append(s_feats[n])
            for n in t_names:
                feats[f"t:{n}"].append(t_feats[n])
            keep = yb.to(s_logits.device) != IGNORE_INDEX
            kept += int(keep.sum())
            for kind in sums:
                values = token_divergence(s_logits, t_logits, kind, temperature=temperature)  # [b, L]
                sums[kind] += float(values[keep].sum()) if bool(keep.any()) else 0.0
    student.model.train()
    out = {
        f"cka/{s}|{t}": linear_cka(torch.cat(feats[f"s:{s}"]), torch.cat(feats[f"t:{t}"]))
        for s in s_names
        for t in t_names
    }
    if kept == 0:
        raise _no_kept("lm_probe_metrics")
    return out | {f"div/{kind}": total / kept for kind, total in sums.items()}
