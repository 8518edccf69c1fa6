"""Streamed validation and probes (kdcore.jobs.lm_eval) equal the full-logits computations of
kdcore.jobs.evaluation, and keep no [N, L, V] teacher logits for a causal LM."""

from __future__ import annotations

import pytest
import torch

from kdcore.adapters.base import eval_mode
from kdcore.cka import linear_cka
from kdcore.divergences import divergence_loss
from kdcore.jobs.config import JobConfig
from kdcore.jobs.evaluation import _batched_logits, teacher_metrics, validation_metrics
from kdcore.jobs.lm_eval import checkpoint_probes, lm_probe_metrics, student_validation, teacher_validation
from kdcore.jobs.resolve import resolve_pair


@pytest.fixture(scope="module")
def tinylang():
    pair = resolve_pair("tinylang")
    val = pair.dataset.split("val").subset(13)
    torch.manual_seed(0)
    student = pair.student.clone(reinit=True, seed=3)  # differs from the teacher
    return pair.teacher, student, val.inputs, val.targets


@pytest.mark.parametrize("rows", [1, 4, None])  # one sequence, uneven last batch, automatic
def test_streamed_validation_equals_the_full_logits_metrics(tinylang, rows):
    teacher, student, x, y = tinylang
    tv = teacher_validation(teacher, x, y, "causal_lm", "cpu", rows=rows)
    assert tv.logits is None and tv.top1 is not None and tv.top1.shape == x.shape  # no [N, L, V] kept
    with eval_mode(teacher.model):
        t_full = _batched_logits(teacher, x, "cpu")
    ref = teacher_metrics("causal_lm", t_full, y)
    assert tv.metrics == pytest.approx(ref, rel=1e-6)
    got = student_validation(student, x, y, "causal_lm", tv, "cpu", rows=rows)
    with torch.no_grad(), eval_mode(student.model):
        s_full = _batched_logits(student, x, "cpu")
    assert got == pytest.approx(validation_metrics("causal_lm", s_full, y, t_full), rel=1e-6)
    assert 0.0 < got["val_agreement"] < 1.0


def test_streamed_probe_equals_cka_and_divergences_on_everything(tinylang):
    teacher, student, x, y = tinylang
    terms = JobConfig(pair="tinylang", objective="token", temperature=2.0).resolved_terms()
    got = lm_probe_metrics(student, teacher, x, y, terms, rows=3)
    s_names, t_names = student.default_layers(), teacher.default_layers()
    s_feats, t_feats = student.capture(x, s_names), teacher.capture(x, t_names)
    s_logits, t_logits = student.logits(x), teacher.logits(x)
    mask = y != -100
    ref = {f"cka/{a}|{b}": linear_cka(s_feats[a], t_feats[b]) for a in s_names for b in t_names}
    ref |= {
        f"div/{k}": float(divergence_loss(s_logits, t_logits, k, mask=mask, temperature=2.0)) for k in ("fkl", "rkl")
    }
    assert set(got) == set(ref) and len(ref) > 2
    assert got == pytest.approx(ref, rel=1e-5)
    assert student.model.training  # left in train mode, as probe_metrics does
    assert checkpoint_probes(student, teacher, x, y, "causal_lm", terms) == pytest.approx(ref, rel=1e-5)


def test_classifier_validation_keeps_its_full_logits():
    pair = resolve_pair("digits")
    val = pair.dataset.split("val").subset(32)
    tv = teacher_validation(pair.teacher, val.inputs, val.targets, "classification", "cpu")
    assert tv.logits is not None and tv.logits.shape == (32, 10)
    assert tv.metrics == teacher_metrics("classification", tv.logits, val.targets)
