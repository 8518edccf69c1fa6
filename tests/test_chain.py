"""Chains of runs (kdcore/jobs/chain.py, methods/13 §13.2 and §13.4a): TAKD with one stage is classic
KD; a finished student teaches the next stage; midpoint picks the assistant nearest the accuracy
midpoint; DGKD's step against float64 numpy; BAN's generations and ensemble; the store's child runs;
bad input refused before anything runs; the CLI."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np
import pytest
import torch

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.jobs.chain import GuideStack, is_chain, plan_chain, run_chain
from kdcore.jobs.objectives import compute_loss
from kdcore.methods import StepTensors
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError
from sample_models import load_pair

# a few steps on a small slice of digits: each stage well under a second
BASE = JobConfig(
    pair="digits", objective="takd", epochs=1, max_steps=2, train_size=64, val_size=64, checkpoints=0, lr=1e-2
)


def _cfg(objective: str, **params) -> JobConfig:
    return replace(BASE, objective=objective, params=params)


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(-1) == y).mean())


def _val(n: int = 64):
    return load_pair("digits").dataset.split("val").subset(n)


# ---- TAKD --------------------------------------------------------------------------------------------


def test_takd_with_one_stage_equals_classic_kd(tmp_path):
    store = RunStore(tmp_path)
    chain = run_chain(_cfg("takd", path="none"), store=store)
    kd = run_job(replace(BASE, objective="kd"), store=store)
    assert chain.state == kd.state == "completed" and len(chain.stages) == 1
    stage = chain.stages[0].metrics
    for key in ("final_val_acc", "final_val_loss", "best_val_acc", "final_train_loss", "teacher_val_acc"):
        assert stage[key] == kd.metrics[key], key
    assert chain.metrics["final_val_acc"] == kd.metrics["final_val_acc"]
    steps_chain = store.metrics(chain.stages[0].run_id, "step")
    steps_kd = store.metrics(kd.run_id, "step")
    assert steps_chain[["loss", "ce", "kl"]].equals(steps_kd[["loss", "ce", "kl"]])


def test_takd_full_chain_each_finished_student_teaches_the_next(tmp_path):
    store = RunStore(tmp_path)
    res = run_chain(_cfg("takd", path="full"), store=store)
    assert res.state == "completed"
    stages = res.metrics["stages"]
    assert [s["teacher"] for s in stages] == ["teacher", "assistant 1", "assistant 2", "assistant 3"]
    assert [s["student"] for s in stages][-1] == "student"
    sizes = [stages[0]["teacher_parameters"]] + [s["student_parameters"] for s in stages]
    assert all(a > b for a, b in zip(sizes, sizes[1:]))  # every stage shrinks
    for before, after in zip(stages, stages[1:]):  # the stage's teacher is the previous stage's student
        assert after["teacher_val_acc"] == before["final_val_acc"]
    children = store.chain_stages(res.chain_id)
    assert [c["chain_stage"] for c in children] == [1, 2, 3, 4]
    assert [c["id"] for c in children] == [s["run_id"] for s in stages]
    assert all(c["objective"] == "kd" and c["state"] == "completed" for c in children)
    assert [c["seed"] for c in children] == [0, 1, 2, 3]
    chain_row = store.get_run(res.chain_id)
    assert chain_row["objective"] == "takd" and chain_row["state"] == "completed"
    assert chain_row["summary"]["stages"] == stages and chain_row["chain_id"] is None


def test_midpoint_picks_the_assistant_whose_accuracy_is_nearest_the_middle(tmp_path):
    pair = load_pair("digits")
    plan = plan_chain(_cfg("takd", path="midpoint"), pair)
    val = _val()
    y = val.targets.numpy()

    def acc(adapter) -> float:
        return _np_accuracy(adapter.logits(val.inputs).double().numpy(), y)

    accs = [acc(a) for a in pair.ladder]
    mid = (acc(pair.teacher) + acc(pair.student_baseline)) / 2
    want = int(np.argmin([abs(a - mid) for a in accs]))  # first on ties: the larger assistant
    assert [m.label for m in plan.models] == ["teacher", f"assistant {want + 1}", "student"]
    assert plan.measured[f"assistant {want + 1}"] == pytest.approx(accs[want], abs=1e-12)
    assert len(plan.configs) == 2 and all(c.objective == "kd" for c in plan.configs)


# ---- DGKD --------------------------------------------------------------------------------------------


def test_dgkd_step_equals_a_float64_computation_with_the_same_dropped_guide():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64).float().requires_grad_()
    guides = [torch.randn(6, 5, generator=g) * 3 for _ in range(3)]
    y = torch.randint(0, 5, (6,), generator=g)
    batch = StepTensors("classification", s, guides[0], y, teacher_feats={"guides.1": guides[1], "guides.2": guides[2]})
    T, lam = 5.0, 0.7
    cfg = JobConfig(objective="dgkd", temperature=T, lam=lam, params={"guides": 3, "drop_num": 1}).validate()
    torch.manual_seed(11)
    loss, comps = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), batch)
    torch.manual_seed(11)
    dropped = set(torch.randperm(3)[:1].tolist())  # the same draw from the same global generator
    sn = s.detach().double().numpy()
    log_q = _np_log_softmax(sn / T)
    kl = 0.0
    for i, gl in enumerate(guides):
        if i not in dropped:
            log_p = _np_log_softmax(gl.double().numpy() / T)
            kl += (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
    ce = -_np_log_softmax(sn)[np.arange(6), y.numpy()].mean()
    assert float(comps["kl"].detach()) == pytest.approx(T * T * kl, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(lam * T * T * kl + (1 - lam) * ce, rel=1e-5)


def test_dgkd_with_one_guide_is_kd_and_more_guides_need_the_chain(tmp_path):
    from kdcore.losses import kd_loss

    g = torch.Generator().manual_seed(4)
    s, t, y = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)
    cfg = JobConfig(objective="dgkd").validate()  # T = 5, λ = 1, one guide: the teacher
    loss, _ = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), StepTensors("classification", s, t, y))
    torch.testing.assert_close(loss, kd_loss(s, t, y, temperature=5.0, lam=1.0))
    with pytest.raises(ValueError, match="guides.1.*runs as a chain of runs"):
        run_job(replace(BASE, objective="dgkd", params={"guides": 3}), store=RunStore(tmp_path))


def test_dgkd_chain_guides_every_stage_with_all_models_above_it(tmp_path):
    store = RunStore(tmp_path)
    res = run_chain(_cfg("dgkd"), store=store)
    assert res.state == "completed"
    children = store.chain_stages(res.chain_id)
    assert [c["config"]["params"]["guides"] for c in children] == [1, 2, 3, 4]
    assert all(c["objective"] == "dgkd" and c["config"]["params"]["drop_num"] == 1 for c in children)
    assert all("kl" in store.metrics(c["id"], "step") for c in children)
    pair = load_pair("digits")
    x = pair.dataset.split("val").inputs[:8]
    stack = GuideStack([pair.teacher.model, pair.student.model]).eval()
    with torch.no_grad():
        torch.testing.assert_close(stack(x), pair.teacher.model(x))
        from kdcore.adapters import wrap
        from kdcore.jobs.teacher_cache import compute_teacher_outputs

        logits, feats = compute_teacher_outputs(
            wrap(stack, name="s", kind="classifier", output_size=10), x, ["guides.1"]
        )
        torch.testing.assert_close(logits, pair.teacher.model(x))
        torch.testing.assert_close(feats["guides.1"], pair.student.model(x))  # guide 1 reaches the step


# ---- BAN ---------------------------------------------------------------------------------------------


def test_ban_generations_and_their_ensemble(tmp_path):
    store = RunStore(tmp_path)
    res = run_chain(_cfg("ban", generations=2, ensemble=True), store=store)
    assert res.state == "completed"
    children = store.chain_stages(res.chain_id)
    assert [c["objective"] for c in children] == ["ce", "ban", "ban"]
    assert [s["student"] for s in res.metrics["stages"]] == ["generation 0", "generation 1", "generation 2"]
    pair, val = load_pair("digits"), _val()
    probs = []
    for c in children[1:]:  # generations 1 and 2, independently from their stored weights
        model = pair.student.clone(reinit=False).model
        model.load_state_dict(store.load_student(c["id"]))
        with torch.no_grad():
            z = model.eval()(val.inputs).double().numpy()
        probs.append(np.exp(_np_log_softmax(z)))
    want = _np_accuracy(np.mean(probs, axis=0), val.targets.numpy())
    assert res.metrics["ensemble_val_acc"] == pytest.approx(want, abs=1e-12)


# ---- bad input ---------------------------------------------------------------------------------------


def _pair_with(ladder) -> Pair:
    p = load_pair("digits")
    return Pair("digits-variant", p.teacher, p.student, p.student_baseline, p.dataset, ladder=tuple(ladder))


@pytest.mark.parametrize(
    "objective, ladder, match",
    [
        ("takd", "none", "has no student ladder.*ladder=.*path 'none'"),
        ("dgkd", "none", "has no student ladder"),
        ("takd", "teacher", "assistant 1 .* not fewer than its teacher's 24,058: an assistant must be smaller"),
        ("takd", "reversed", "does not shrink at every stage.*Order Pair.ladder from largest to smallest"),
        ("dgkd", "reversed", "does not shrink at every stage"),
    ],
)
def test_bad_chains_are_refused_before_anything_runs(tmp_path, objective, ladder, match):
    rungs = load_pair("digits").ladder
    chosen = {"none": (), "teacher": (load_pair("digits").teacher, *rungs), "reversed": rungs[::-1]}[ladder]
    store = RunStore(tmp_path)
    with pytest.raises(InvalidParameterError, match=match):
        run_chain(_cfg(objective), store=store, pair=_pair_with(chosen))
    assert len(store.list_runs()) == 0  # nothing ran, nothing was recorded


def test_single_runs_and_misfit_tasks_are_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="'kd' is a single run, not a chain \\(chains: ban, takd, dgkd\\)"):
        plan_chain(replace(BASE, objective="kd"))
    with pytest.raises(InvalidParameterError, match="'takd' is a classification loss.*multilabel"):
        plan_chain(replace(_cfg("takd"), pair="shapes_multilabel"))
    with pytest.raises(Exception, match="path must be one of full, midpoint, none"):
        plan_chain(_cfg("takd", path="half"))
    assert is_chain("teacher_assistant") and is_chain("born_again") and not is_chain("kd") and not is_chain("nope")


# ---- the store and the CLI ---------------------------------------------------------------------------


def test_an_old_store_gains_the_chain_columns(tmp_path):
    con = sqlite3.connect(tmp_path / "runs.sqlite")
    con.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, state TEXT NOT NULL, "
        "name TEXT, pair TEXT, objective TEXT, config TEXT NOT NULL, parent_id TEXT, cancel_requested INTEGER NOT "
        "NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0, summary TEXT)"
    )
    con.execute("INSERT INTO runs (id, created, updated, state, config) VALUES ('old', 1, 1, 'completed', '{}')")
    con.commit()
    con.close()
    store = RunStore(tmp_path)
    old = store.get_run("old")
    assert old["chain_id"] is None and old["chain_stage"] is None
    new = store.create_run(JobConfig(), chain_id="old", chain_stage=1)
    assert [r["id"] for r in store.chain_stages("old")] == [new]


def test_cli_distill_runs_the_chain_and_runs_show_lists_its_stages(data_dir, capsys):
    argv = ["distill", "--pair", "digits", "--objective", "takd", "--param", "path=midpoint", "--max-steps", "2"]
    argv += ["--train-size", "64", "--val-size", "64", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and len(out["metrics"]["stages"]) == 2
    assert main(["runs", "show", out["run_id"]]) == 0
    text = capsys.readouterr().out
    assert "stages: 2 (a takd chain)" in text
    assert "stage 1: teacher → assistant" in text and "→ student (3,022 params) completed" in text


def test_a_stage_cannot_be_rerun_alone_but_the_chain_can(data_dir, capsys):
    store = RunStore(data_dir)
    res = run_chain(_cfg("takd", path="none"), store=store)
    stage = res.stages[0].run_id
    with pytest.raises(InvalidParameterError, match=f"stage 1 of the chain {res.chain_id}.*Re-run the chain"):
        from kdcore.jobs.worker import rerun

        rerun(stage, store=store, start_worker=False)
    assert main(["runs", "rerun", stage]) == 2  # refused: bad input
    assert f"Re-run the chain {res.chain_id}" in capsys.readouterr().err
    assert main(["runs", "rerun", res.chain_id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed" and store.get_run(out["run_id"])["parent_id"] == res.chain_id
    assert [r["chain_stage"] for r in store.chain_stages(out["run_id"])] == [1]


def test_the_leaderboard_runs_a_chain_whole_and_scores_its_final_student(tmp_path):
    from kdcore.jobs.leaderboard import compare_methods

    store = RunStore(tmp_path)
    budget = {"epochs": 1, "max_steps": 2, "train_size": 64, "val_size": 64, "checkpoints": 0}
    res = compare_methods("digits", ["takd"], [0], base=budget, store=store)
    chain_id = res.runs.set_index("variant").loc["takd", "run_id"]
    stages = store.chain_stages(chain_id)
    assert len(stages) == 4 and all(s["state"] == "completed" for s in stages)
    last = store.metrics(stages[-1]["id"], "epoch")
    row = res.table.set_index("method").loc["takd"]
    assert row["best_mean"] == last["val_acc"].dropna().max() and row["final_mean"] == last["val_acc"].dropna().iloc[-1]
    summary = store.get_run(chain_id)["summary"]
    assert summary["steps"] == sum(s["step"] for s in stages) == 4 and summary["steps_per_s"] > 0
    with pytest.raises(InvalidParameterError, match="takd: The pair 'digits-variant' has no student ladder"):
        from kdcore.jobs.leaderboard import _check_fits, leaderboard_configs

        _check_fits(leaderboard_configs("digits", ["takd"], [0], budget), _pair_with(()))


def test_a_queued_chain_runs_whole_in_the_worker_and_stops_when_cancelled(tmp_path):
    from kdcore.jobs.worker import run_queued, submit

    store = RunStore(tmp_path)
    rid = submit(_cfg("takd", path="midpoint"), store=store, start_worker=False)
    run_queued(rid, store)
    run = store.get_run(rid)
    assert run["state"] == "completed" and len(run["summary"]["stages"]) == 2
    assert [s["chain_stage"] for s in store.chain_stages(rid)] == [1, 2]
    last = run["summary"]["stages"][-1]["run_id"]  # the chain's curves are its final student's
    assert (
        store.metrics(rid, "epoch")["val_acc"].dropna().tolist()
        == store.metrics(last, "epoch")["val_acc"].dropna().tolist()
    )
    cancelled = submit(_cfg("takd", path="full"), store=store, start_worker=False)
    store.update_run(cancelled, cancel_requested=1)  # asked to stop: the first stage stops at its first step
    store.claim(cancelled, 0)
    res = run_chain(_cfg("takd", path="full"), store=store, run_id=cancelled)
    assert res.state == "cancelled" and len(res.stages) == 1 and "Stage 1 of 4 ended cancelled" in res.error
