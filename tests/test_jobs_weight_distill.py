"""Weight distillation's two phases (kdcore/jobs/weight_distill.py, §14.2) on the digits pair, with
explicit k = 1 groups (stage i <- teacher stage i, head <- head; digits' 3 -> 2 stages do not divide)."""

from __future__ import annotations

import pytest
import torch

from kdcore.jobs.weight_distill import WDConfig, train_weight_distill
from kdcore.validation import InvalidParameterError
from sample_models import load_pair


def _setup():
    pair = load_pair("digits")
    tr, va = pair.dataset.split("train"), pair.dataset.split("val")
    groups = {n: [n] for n, _ in pair.student.model.named_parameters()}
    return pair, groups, (tr.inputs[:128], tr.targets[:128]), (va.inputs[:64], va.targets[:64])


def test_both_phases_run_deterministically_and_leave_the_pair_untouched():
    pair, groups, train, val = _setup()
    before = {k: v.clone() for k, v in {**pair.student.model.state_dict(), **pair.teacher.model.state_dict()}.items()}
    cfg = WDConfig(phase1_steps=4, phase2_steps=4, batch_size=32, lr=3e-3)
    res = train_weight_distill(pair.teacher.model, pair.student.model, groups, train, val, cfg)
    assert [h["phase"] for h in res.history] == [1] * 4 + [2] * 4
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    assert set(res.val_acc) == {"phase1", "phase2"} and all(0 <= a <= 1 for a in res.val_acc.values())
    assert set(res.generated) == set(groups) and all(c == [1.0] for c in res.mix.values())  # k = 1: c = 1
    moved = [n for n, p in res.student.named_parameters() if not torch.equal(p.detach(), res.generated[n])]
    assert moved  # phase 2 trained the plain student from the generated weights
    again = train_weight_distill(pair.teacher.model, pair.student.model, groups, train, val, cfg)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in res.history]
    after = {**pair.student.model.state_dict(), **pair.teacher.model.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_kd_targets_and_bad_config_are_refused_with_the_reason():
    pair, groups, train, val = _setup()
    res = train_weight_distill(
        pair.teacher.model,
        pair.student.model,
        groups,
        train,
        val,
        WDConfig(phase1_steps=2, phase2_steps=2, target="kd"),
    )
    assert len(res.history) == 4
    with pytest.raises(InvalidParameterError, match="target must be one of"):
        train_weight_distill(pair.teacher.model, pair.student.model, groups, train, val, WDConfig(target="soft"))
    with pytest.raises(InvalidParameterError, match="phase1_steps must be an integer >= 1"):
        train_weight_distill(pair.teacher.model, pair.student.model, groups, train, val, WDConfig(phase1_steps=0))
    with pytest.raises(InvalidParameterError, match="mixed shapes"):
        bad = {**groups, "conv2.0.weight": ["conv2.0.weight", "conv3.0.weight"]}
        train_weight_distill(pair.teacher.model, pair.student.model, bad, train, val, WDConfig(phase1_steps=1))
