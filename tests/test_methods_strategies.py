"""The methods/13 entries of the method table (clkd, tfkd, ban): each step is its tested loss, the
table lists them, and each runs end to end on the toy pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.objectives import compute_loss
from kdcore.losses import SOFTEN, ban_loss, clkd_loss, tfkd_reg_loss
from kdcore.methods import StepTensors
from kdcore.methods.strategies import SOFTEN as TABLE_SOFTEN
from tests.helpers.toys import TOY

NEW = ("clkd", "tfkd", "ban")


def _batch(seed: int = 0) -> StepTensors:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(8, 5, generator=g).requires_grad_()
    return StepTensors("classification", s, torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g))


def _loss(objective: str, batch: StepTensors, **kw) -> torch.Tensor:
    cfg = JobConfig(objective=objective, **kw).validate()
    return compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), batch)[0]


def test_steps_equal_their_tested_losses():
    b = _batch()
    s, t, y = b.student_logits, b.teacher_logits, b.targets
    torch.testing.assert_close(_loss("clkd", b), clkd_loss(s, t, y)["loss"])
    torch.testing.assert_close(
        _loss("clkd", b, params={"mu": 1.0, "beta": 0.5, "nu": 2.0, "cov_divisor": 4.0}),
        clkd_loss(s, t, y, mu=1.0, beta=0.5, nu=2.0, cov_divisor=4.0)["loss"],
    )
    torch.testing.assert_close(_loss("tfkd", b), tfkd_reg_loss(s, y, a=0.99, temperature=20.0, alpha=0.1))
    torch.testing.assert_close(
        _loss("tf_kd", b, temperature=3.0, params={"alpha": 0.5, "multiplier": 2.0, "soften": "log_probs"}),
        tfkd_reg_loss(s, y, temperature=3.0, alpha=0.5, multiplier=2.0, soften="log_probs"),
    )
    torch.testing.assert_close(_loss("ban", b), ban_loss(s, t))
    torch.testing.assert_close(
        _loss("born_again", b, params={"label_weight": 1.0}), ban_loss(s, t, y, label_weight=1.0)
    )


def test_tfkd_ignores_the_teacher_and_clkd_records_its_terms():
    b, other = _batch(1), _batch(1)
    other.teacher_logits = other.teacher_logits * 3 + 1
    torch.testing.assert_close(_loss("tfkd", b), _loss("tfkd", other))
    cfg = JobConfig(objective="clkd").validate()
    _, comps = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), b)
    assert set(comps) == {"ce", "ins", "cla", "cc"}
    parts = clkd_loss(b.student_logits, b.teacher_logits, b.targets)
    for k in comps:
        torch.testing.assert_close(comps[k], parts[k])


def test_the_table_lists_them_with_their_spec_sections(capsys):
    assert TABLE_SOFTEN == SOFTEN
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["methods"]}
    assert rows["clkd"]["section"] == "methods/13 §13.1" and rows["tfkd"]["section"] == "methods/13 §13.4c"
    assert rows["ban"]["section"] == "methods/13 §13.4a"
    assert [p["name"] for p in rows["clkd"]["params"]] == ["ce_weight", "mu", "beta", "nu", "cov_divisor"]
    assert rows["tfkd"]["default_temperature"] == 20.0 and rows["ban"]["aliases"] == ["born_again"]
    assert all(rows[n]["tasks"] == ["classification"] for n in NEW)
    names = list(rows)
    assert names.index("ban") < names.index("ce") == len(names) - 1


@pytest.mark.parametrize(
    "objective, params, needle",
    [
        ("clkd", {"mu": -1}, "params.mu must be a number in [0, inf); got -1"),
        ("clkd", {"cov_divisor": 0}, "params.cov_divisor must be a number in (0, inf); got 0"),
        ("tfkd", {"a": 0.0}, "params.a must be a number in (0, 1]; got 0.0"),
        ("tfkd", {"soften": "logits"}, "params.soften must be one of probs, log_probs; got 'logits'"),
        ("ban", {"label_weight": -0.5}, "params.label_weight must be a number in [0, inf); got -0.5"),
    ],
)
def test_bad_parameters_say_the_range(objective, params, needle):
    problems = JobConfig(objective=objective, params=params).problems()
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize(
    "objective, keys", [("clkd", {"ce", "ins", "cla", "cc"}), ("tfkd", {"ce", "kl"}), ("ban", {"kl"})]
)
def test_each_runs_on_the_toy_pair(data_dir, objective, keys):
    store = RunStore()
    r = run_job(
        JobConfig(pair=TOY, objective=objective, epochs=1, batch_size=32, val_size=32, probe_size=16, seed=0),
        store=store,
    )
    assert r.state == "completed", r.error
    df = store.metrics(r.run_id, "step")
    assert keys <= set(df.columns) and np.isfinite(df["loss"]).all()
