"""Be Your Own Teacher (exits) and education distillation (grades) as runs: methods/13 §13.4b, §13.5.

Exits and grade heads leave the pair's model unchanged; per-exit and per-grade metrics are recorded;
the grade schedule follows the spec's rule; bad input is refused before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdcore.exits import EXITS_KEY, ExitHead, ExitHeads, exit_logits, exit_problems
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.education_job import grade_schedule, scaled_boundaries
from kdcore.jobs.objectives import compute_loss
from kdcore.losses import byot_losses
from kdcore.methods import StepTensors
from kdcore.methods.grown import EXITS_KEY as TABLE_EXITS_KEY
from kdcore.methods.params import Param, parse_text
from kdcore.pair_registry import resolve_pair
from tests.helpers.runs import cancel_and_resume

FAST = dict(pair="digits", train_size=192, val_size=96, batch_size=64, probe_size=16, checkpoints=1, seed=0)


def _params(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}


def _run(objective: str, **kw):
    events: list[dict] = []
    r = run_job(JobConfig(objective=objective, **{**FAST, **kw}), use_store=False, callback=events.append)
    assert r.state == "completed", r.error
    return (
        r,
        [e["metrics"] for e in events if e["event"] == "epoch"],
        [e["metrics"] for e in events if e["event"] == "step"],
    )


# ---- exits -----------------------------------------------------------------------------------------------


def test_exit_head_on_vectors_is_bottleneck_relu_then_linear():
    g = torch.Generator().manual_seed(1)
    head = ExitHead((6,), width=4, num_classes=3).double()
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    z, h = head(x)
    w1, b1 = head.bottleneck[0].weight.detach().numpy(), head.bottleneck[0].bias.detach().numpy()
    w2, b2 = head.fc.weight.detach().numpy(), head.fc.bias.detach().numpy()
    h_np = np.maximum(x.numpy() @ w1.T + b1, 0.0)
    np.testing.assert_allclose(h.detach().numpy(), h_np, rtol=1e-12)
    np.testing.assert_allclose(z.detach().numpy(), h_np @ w2.T + b2, rtol=1e-12)


def test_exit_head_on_maps_pools_after_the_1x1_bottleneck():
    g = torch.Generator().manual_seed(2)
    head = ExitHead((3, 4, 4), width=2, num_classes=5).double().eval()
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    conv = head.bottleneck[0].weight.detach().numpy()[:, :, 0, 0]  # [2, 3]
    bn = head.bottleneck[1]
    y = np.einsum("oc,bchw->bohw", conv, x.numpy())
    y = (y - bn.running_mean.numpy()[None, :, None, None]) / np.sqrt(
        bn.running_var.numpy()[None, :, None, None] + bn.eps
    )
    pooled = np.maximum(y, 0.0).mean(axis=(2, 3))
    z, h = head(x)
    np.testing.assert_allclose(h.detach().numpy(), pooled, rtol=1e-10)
    np.testing.assert_allclose(
        z.detach().numpy(), pooled @ head.fc.weight.detach().numpy().T + head.fc.bias.detach().numpy(), rtol=1e-10
    )


def test_exits_read_the_student_without_changing_it():
    pair = resolve_pair("digits")
    student = pair.student
    before = _params(student.model)
    modules = [n for n, _ in student.model.named_modules()]
    x = pair.dataset.split("val").inputs[:8]
    _, feats = student.forward_features(x, ["conv1", "conv2"])
    heads = ExitHeads.build(feats, ["conv1", "conv2"], num_classes=10)
    out = heads(feats)
    assert [tuple(z.shape) for z in out.logits] == [(8, 10)]
    assert tuple(out.adapted[0].shape) == tuple(out.deep.shape) == (8, 24)
    assert len(exit_logits(student, heads, x)) == 2
    after = _params(student.model)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert [n for n, _ in student.model.named_modules()] == modules
    assert not any(m._forward_hooks for m in student.model.modules())
    assert TABLE_EXITS_KEY == EXITS_KEY


def test_byot_step_is_byot_losses_on_the_exits():
    g = torch.Generator().manual_seed(3)
    feats = {"a": torch.randn(6, 4, 3, 3, generator=g), "b": torch.randn(6, 5, 2, 2, generator=g)}
    heads = ExitHeads.build(feats, ["a", "b"], num_classes=7)
    logits, y = torch.randn(6, 7, generator=g), torch.randint(0, 7, (6,), generator=g)
    batch = StepTensors("classification", logits, logits, y, feats, {}, torch.nn.ModuleDict({EXITS_KEY: heads}))
    cfg = JobConfig(objective="byot", params={"alpha": 0.4, "hint_weight": 0.1, "temperature": 2.0}).validate()
    total, comps = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), batch)
    out = heads(feats)
    per, ref = byot_losses([*out.logits, logits], y, out.adapted, out.deep, temperature=2.0, alpha=0.4, lam=0.1)
    assert set(comps) == {"exit1", "exit2"}
    assert float(total.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    assert float(comps["exit2"].detach()) == pytest.approx(float(per[1].detach()), rel=1e-6)


def test_byot_runs_on_digits_with_per_exit_accuracy_and_leaves_the_pair_alone():
    pair = resolve_pair("digits")
    before = _params(pair.student.model)
    r, epochs, steps = _run("byot", epochs=2)
    assert len(epochs) == 2
    for m in epochs:
        assert {"val_acc_exit1", "val_acc_exit2", "val_acc_exit_mean"} <= set(m)
        assert m["val_acc_exit2"] == pytest.approx(m["val_acc"])  # exit K is the student's own head
    assert {"exit1", "exit2"} <= set(steps[0]) and np.isfinite(steps[-1]["loss"])
    after = _params(pair.student.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_byot_exits_at_any_named_layers(data_dir):
    store = RunStore()
    layers = ["conv1.0", "conv2", "conv2.2"]  # any named layers, shallow -> deep
    r = run_job(JobConfig(objective="byot", epochs=1, params={"layers": layers}, **FAST), store=store)
    assert r.state == "completed", r.error
    ep = store.metrics(r.run_id, "epoch")
    assert {"val_acc_exit1", "val_acc_exit2", "val_acc_exit3"} <= set(ep.columns)
    assert "val_acc_exit4" not in ep.columns


# ---- education -------------------------------------------------------------------------------------------


def test_scaled_boundaries_are_the_papers_at_240_epochs_and_keep_every_grade():
    assert scaled_boundaries(240, 3) == (150, 180)
    for epochs in range(3, 60):
        for grades in range(2, min(epochs, 6) + 1):
            b = scaled_boundaries(epochs, grades)
            assert len(b) == grades - 1 and b[0] >= 2 and b[-1] <= epochs
            assert all(x < y for x, y in zip(b, b[1:]))


def test_grade_schedule_follows_the_spec_rule():
    # g(e) = 1 + #{b ∈ {150, 180} : e ≥ b}, written out independently
    spec = [1 + (e >= 150) + (e >= 180) for e in range(1, 241)]
    assert grade_schedule(240, (150, 180)) == spec
    assert grade_schedule(5, scaled_boundaries(5, 3)) == [1, 1, 2, 3, 3]


def test_education_runs_grade_by_grade_on_digits():
    pair = resolve_pair("digits")
    before = _params(pair.student.model)
    r, epochs, steps = _run("education", epochs=3)
    assert [m["grade"] for m in epochs] == [1.0, 2.0, 3.0]
    assert [m["active_classes"] for m in epochs] == [3.0, 6.0, 10.0]  # 10 classes 1:1:1 -> 3/3/4
    assert {"val_acc_grade1", "val_acc_grade2", "val_acc_grade3"} <= set(epochs[-1])
    assert "val_acc_grade2" not in epochs[0]
    # grade g's epoch reviews grades 1 … g in order
    by_epoch: dict[float, list[float]] = {}
    for s in steps:
        by_epoch.setdefault(s["grade"], []).append(s["batch_grade"])
    assert by_epoch[1.0] == sorted(by_epoch[1.0]) and set(by_epoch[1.0]) == {1.0}
    assert set(by_epoch[3.0]) == {1.0, 2.0, 3.0} and by_epoch[3.0] == sorted(by_epoch[3.0])
    assert r.metrics["steps"] == len(steps) and any("grade 3 starts" in n for n in r.notices)
    after = _params(pair.student.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "objective, kw, needle",
    [
        ("byot", {"params": {"layers": ["conv2"]}}, "at least two distinct layers"),
        ("byot", {"params": {"layers": ["conv1", "nope"]}}, "has no layer(s) ['nope']"),
        ("byot", {"params": {"layers": ["conv1", "head"]}, "pair": "tinylang"}, "causal_lm"),
        ("education", {"pair": "shapes_multilabel"}, "multilabel"),
        ("education", {"epochs": 2}, "needs at least 3 epochs"),
        ("education", {"epochs": 4, "params": {"boundaries": [2, 6]}}, "never be complete"),
        ("education", {"params": {"ratios": [1, 1], "boundaries": [2, 3]}}, "1 strictly increasing"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(data_dir, objective, kw, needle):
    store = RunStore()
    with pytest.raises(ValueError) as info:
        run_job(JobConfig(objective=objective, **{**FAST, "epochs": 3, **kw}), store=store)
    assert needle in str(info.value)
    assert len(store.list_runs()) == 0  # refused before a run was created


def test_byot_inside_sum_is_refused():
    cfg = JobConfig(objective="sum", terms=[{"name": "byot"}, {"name": "kd"}], **FAST)
    with pytest.raises(ValueError, match="not a term of 'sum'"):
        run_job(cfg, use_store=False)


def test_exit_problems_on_a_model_without_usable_layers():
    from kdcore.adapters.module import wrap

    adapter = wrap(torch.nn.Sequential(torch.nn.Linear(4, 3)), name="flat")
    problems = exit_problems(adapter, adapter.default_layers(), torch.zeros(2, 4))
    assert problems and "params.layers" in problems[0]


def test_names_parameters_parse_from_a_form():
    p = Param("layers", None, "exit layers", kind="names")
    assert parse_text(p, "conv1, conv2.0") == ["conv1", "conv2.0"]
    assert p.problems(["conv1"], "params.layers") == [] and p.problems("conv1", "params.layers")


def test_education_with_teachers_trained_on_each_grade_leaves_the_pair_teacher_alone(data_dir):
    pair = resolve_pair("digits")
    before = _params(pair.teacher.model)
    store = RunStore()
    params = {"teachers": "trained", "teacher_epochs": 10}
    cfg = JobConfig(objective="education", epochs=3, lr=0.01, params=params, **FAST)
    r = run_job(cfg, store=store)
    assert r.state == "completed", r.error
    ep = store.metrics(r.run_id, "epoch")
    start = ep[ep["epoch"] == 0].iloc[0]
    accs = [start[f"teacher_acc_grade{h}"] for h in (1, 2, 3)]
    assert all(0.0 <= a <= 1.0 for a in accs) and np.mean(accs) > 1 / 3  # better than chance within a grade
    after = _params(pair.teacher.model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["byot", "education"])
def test_a_resumed_run_continues_exactly(data_dir, objective, monkeypatch):
    """Exits and grade heads are in the resume state; the grade is found again from the epoch."""
    import pandas as pd

    store = RunStore()
    cfg = JobConfig(objective=objective, epochs=3, **FAST)
    full, part, resumed = cancel_and_resume(cfg, store, monkeypatch, epoch=3, steps=2)
    assert resumed.state == "completed" and resumed.step == full.step
    assert not resumed.notices or "grade" in resumed.notices[0]  # no restart from step 0
    a, b = store.metrics(full.run_id, "step"), store.metrics(part.run_id, "step")
    pd.testing.assert_frame_equal(a, b)
    torch.testing.assert_close(store.load_student(full.run_id), store.load_student(part.run_id), rtol=0, atol=0)
