"""Experiments (kdcore/jobs/experiment.py, capacity_study.py, across.py, repro.py): the selection rule on
scripted results, bad input refused before anything runs, and each experiment end to end on digits
with tiny budgets; the numbers checked against plain numpy/scipy on the store's own metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcore.jobs import JobConfig, RunStore
from kdcore.jobs.across import AcrossSpec, run_across
from kdcore.jobs.capacity_study import CapacitySpec, ladder_sizes, run_capacity
from kdcore.jobs.experiment import FLOOR, PlanSpec, _Plan, check_floor, planned_runs, prepare_plan, run_plan
from kdcore.jobs.experiment_store import list_experiments, load_report
from kdcore.jobs.repro import WEIGHTS, ReproSpec, load_config_file, run_repro
from kdcore.jobs.sweeps import SelectionRule
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

TINY = {"epochs": 2, "train_size": 64, "val_size": 64, "batch_size": 32, "checkpoints": 0}


def _best(store: RunStore, run_id: str) -> float:
    ep = store.metrics(run_id, "epoch")
    return float(ep.loc[ep["epoch"] >= 1, "val_acc"].max())


# ---- the selection rule -------------------------------------------------------------------------------------


def test_rule_picks_the_best_mean_and_gives_ties_to_the_lower_value():
    rule = SelectionRule()
    assert rule.choose({1.0: [0.90, 0.92], 2.0: [0.95, 0.93], 5.0: [0.94, 0.90]}, lower_better=False) == 2.0
    assert rule.choose({10.0: [0.9, 0.8], 2.0: [0.8, 0.9], 5.0: [0.1, 0.2]}, lower_better=False) == 2.0  # a tie
    assert SelectionRule(ties="higher").choose({10.0: [0.9, 0.8], 2.0: [0.8, 0.9]}, lower_better=False) == 10.0
    assert rule.choose({1.0: [1.5], 2.0: [1.2], 4.0: [1.3]}, lower_better=True) == 2.0  # a loss: lower wins
    near = {1.0: [0.900], 2.0: [0.905], 4.0: [0.890]}
    assert rule.choose(near, lower_better=False) == 2.0
    assert SelectionRule(tolerance=0.01).choose(near, lower_better=False) == 1.0  # within 0.01: a tie, the lower T
    with pytest.raises(InvalidParameterError, match="no finished run"):
        rule.choose({1.0: [], 2.0: []}, lower_better=False)
    for bad in ({"metric": "mean"}, {"ties": "middle"}, {"tolerance": -0.1}):
        with pytest.raises(InvalidParameterError):
            SelectionRule(**bad)


def _scripted(store: RunStore, eid_runs: dict, phase: str, key: str) -> _Plan:
    """A plan whose runs are scripted curves in the store (no training): {value: {seed: [val_acc per epoch]}}."""
    plan = _Plan(PlanSpec("digits", seeds=(0, 1, 2), rule=SelectionRule()), JobConfig(), None, store, "x", None, None)
    for value, seeds in eid_runs.items():
        variant = f"{key}={value:g}"
        plan.phases[variant], plan.settings[variant] = phase, {"temperature": None, "lam": None, key: value}
        for seed, accs in seeds.items():
            rid = store.create_run(JobConfig(seed=seed), state="completed")
            store.update_run(rid, summary={"metric": "val_acc"})
            store.log_metrics(rid, [("epoch", e, e, "val_acc", a) for e, a in enumerate(accs, 1)])
            plan.rows.append({"variant": variant, "seed": seed, "run_id": rid, "state": "completed"})
    return plan


def test_winner_is_the_best_mean_of_best_epoch_metrics_over_seeds_ties_to_the_lower_t(data_dir):
    store = RunStore()
    curves = {
        1.0: {0: [0.5, 0.7, 0.6], 1: [0.6, 0.8, 0.7], 2: [0.7, 0.75, 0.7]},  # best 0.7, 0.8, 0.75
        2.0: {0: [0.7, 0.8, 0.9], 1: [0.2, 0.6, 0.6], 2: [0.75, 0.6, 0.55]},  # best 0.9, 0.6, 0.75: a tie
        5.0: {0: [0.1, 0.2, 0.3], 1: [0.3, 0.2, 0.1], 2: [0.3, 0.3, 0.3]},
    }
    plan = _scripted(store, curves, "temperature", "temperature")
    means = {t: np.mean([max(c) for c in s.values()]) for t, s in curves.items()}
    assert means[1.0] == pytest.approx(means[2.0])  # the script is a tie
    assert plan.winner("temperature") == (1.0, "temperature=1")
    plan.spec = PlanSpec("digits", rule=SelectionRule(metric="final"))  # final epochs: 0.667 vs 0.683 → T=2
    finals = {t: np.mean([c[-1] for c in s.values()]) for t, s in curves.items()}
    assert max(finals, key=finals.get) == 2.0 and plan.winner("temperature")[0] == 2.0


# ---- bad input, refused before anything runs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"temperatures": (4.0,)}, "at least two values"),
        ({"lams": (0.5,)}, "at least two values"),
        ({"lams": (0.5, 1.5)}, r"\[0, 1\]"),
        ({"lam": -0.1}, r"\[0, 1\]"),
        ({"temperatures": (0.0, 2.0)}, r"\(0, "),
        ({"seeds": ()}, "at least 1"),
        ({"budget": {"temperature": 3.0}}, "budget sets only"),
    ],
)
def test_plan_refuses_bad_input_before_anything_runs(data_dir, spec, match):
    with pytest.raises(InvalidParameterError, match=match):
        run_plan(PlanSpec("digits", **spec), store=RunStore())
    assert list_experiments(RunStore()) == [] and RunStore().list_runs().empty


def test_a_pair_without_a_student_alone_and_a_ladder_that_does_not_shrink_are_refused():
    import sample_models

    digits = sample_models.load_pair("digits")
    no_data = Pair("no data", digits.teacher, digits.student)
    with pytest.raises(InvalidParameterError, match="no student alone for the floor"):
        check_floor(JobConfig(pair="digits"), no_data)
    grown = Pair("grown", digits.teacher, digits.student, dataset=digits.dataset, ladder=digits.ladder[::-1])
    with pytest.raises(InvalidParameterError, match="does not shrink"):
        ladder_sizes(grown)
    with pytest.raises(InvalidParameterError, match="no student ladder"):
        ladder_sizes(Pair("flat", digits.teacher, digits.student, dataset=digits.dataset))
    sizes = ladder_sizes(digits)
    assert [s.label for s in sizes][-1] == "student" and all(
        a.parameters > b.parameters for a, b in zip(sizes, sizes[1:])
    )


def test_repro_with_one_seed_and_other_experiments_on_a_pair_that_does_not_fit_are_refused(data_dir):
    with pytest.raises(InvalidParameterError, match="at least 2 distinct"):
        run_repro(ReproSpec(JobConfig(pair="digits"), seeds=(0,)), store=RunStore())
    with pytest.raises(InvalidParameterError, match="thread counts"):
        run_repro(ReproSpec(JobConfig(pair="digits"), seeds=(0, 1), threads=(0,)), store=RunStore())
    with pytest.raises(InvalidParameterError, match="must take both"):
        run_capacity(CapacitySpec("tinylang"), store=RunStore())
    with pytest.raises(InvalidParameterError, match="fits none"):
        run_across(AcrossSpec("kd", pairs=["tinylang"], seeds=(0,)), store=RunStore())
    assert RunStore().list_runs().empty


# ---- end to end on digits, tiny budgets ----------------------------------------------------------------------


@pytest.mark.slow  # ~2 s of CPU (a dozen tiny runs); more on a loaded machine
def test_plan_end_to_end_floor_then_t_sweep_then_lam_sweep_at_the_winning_t(data_dir):
    store = RunStore()
    spec = PlanSpec("digits", seeds=(0, 1), temperatures=(1.0, 4.0), lams=(0.5, 0.9), budget=TINY)
    report = run_plan(spec, store=store)
    assert report["state"] == "completed"
    stored = load_report(store, report["experiment_id"])
    assert stored["chosen"]["lam"]["value"] == report["chosen"]["lam"]["value"]
    assert [r["variant"] for r in stored["table"]] == [r["variant"] for r in report["table"]]
    runs = pd.DataFrame(report["runs"])
    assert (
        len(set(runs["run_id"])) == planned_runs(prepare_plan(spec)[0]) == 2 * (1 + 2 + 1)
    )  # λ 0.9 = recipe's: reused
    t_star = report["chosen"]["temperature"]["value"]
    best = {v: [_best(store, r) for r in g["run_id"]] for v, g in runs.groupby("variant")}
    means = {t: np.mean(best[f"T={t:g}"]) for t in (1.0, 4.0)}
    top = max(means.values())
    assert t_star == min(t for t, m in means.items() if m == top)
    lam_cfgs = [store.get_run(r)["config"] for r in runs.loc[runs["variant"].str.startswith("λ="), "run_id"]]
    assert {c["temperature"] for c in lam_cfgs} == {t_star} and {c["lam"] for c in lam_cfgs} == {0.5, 0.9}
    floor_cfg = store.get_run(runs.loc[runs["variant"] == FLOOR, "run_id"].iloc[0])["config"]
    assert floor_cfg["objective"] == "ce" and all(
        c["epochs"] == floor_cfg["epochs"] == 2 and c["lr"] == floor_cfg["lr"] for c in lam_cfgs
    )
    row = next(r for r in report["table"] if r["variant"] == f"T={t_star:g}")
    diffs = np.array(best[f"T={t_star:g}"]) - np.array(best[FLOOR])
    half = stats.t.ppf(0.975, 1) * diffs.std(ddof=1) / np.sqrt(2)
    assert row["gain_mean"] == pytest.approx(diffs.mean())
    if np.isfinite(half):
        assert row["gain_low"] == pytest.approx(diffs.mean() - half) and row["gain_high"] == pytest.approx(
            diffs.mean() + half
        )
    assert set(report["curves"]) == set(runs["variant"]) and len(report["curves"][FLOOR]["mean"]) == 2
    assert list_experiments(store)[0]["has_report"]


@pytest.mark.slow  # ~2 s of CPU (a dozen tiny runs); more on a loaded machine
def test_capacity_grid_gains_over_the_same_size_student_alone(data_dir):
    store = RunStore()
    report = run_capacity(CapacitySpec("digits", seeds=(0, 1), temperatures=(1.0, 4.0), budget=TINY), store=store)
    sizes = [s["size"] for s in report["sizes"]]
    assert sizes[-1] == "student" and len(report["grid"]) == 2 * len(sizes)
    runs = pd.DataFrame(report["runs"])
    cell = next(g for g in report["grid"] if g["size"] == sizes[0] and g["temperature"] == 4.0)
    kd = [_best(store, r) for r in runs.loc[runs["variant"] == f"{sizes[0]} T=4", "run_id"]]
    alone = [_best(store, r) for r in runs.loc[runs["variant"] == f"{sizes[0]} alone", "run_id"]]
    assert cell["gain_mean"] == pytest.approx(np.mean(np.array(kd) - np.array(alone)))
    params = [store.get_run(r)["config"]["name"] for r in runs["run_id"]]
    assert all("(capacity)" in p for p in params)


def test_across_pairs_table_and_skipped_pairs(data_dir):
    store = RunStore()
    report = run_across(AcrossSpec("kd", pairs=["digits", "tinylang"], seeds=(0, 1), budget=TINY), store=store)
    assert [r["pair"] for r in report["table"]] == ["digits"] and "tinylang" in report["skipped"]
    runs = pd.DataFrame(report["runs"])
    kd = [_best(store, r) for r in runs.loc[runs["variant"] == "digits", "run_id"]]
    alone = [_best(store, r) for r in runs.loc[runs["variant"] == "digits alone", "run_id"]]
    d = np.array(kd) - np.array(alone)
    row = report["table"][0]
    assert row["gain_mean"] == pytest.approx(d.mean()) and row["gain_std"] == pytest.approx(d.std(ddof=1))


@pytest.mark.slow  # ~2 s of CPU (a dozen tiny runs); more on a loaded machine
def test_repro_marks_identical_runs_identical_and_a_changed_seed_different(data_dir, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("pair: digits\nobjective: kd\nepochs: 2\ntrain_size: 64\nval_size: 64\ncheckpoints: 0\n")
    cfg = load_config_file(path)
    assert cfg.lr == 1e-2 and cfg.schedule == "cosine"  # the recipe fills what the file leaves out
    report = run_repro(ReproSpec(cfg, seeds=(0, 1), threads=(1, 2), devices=("cpu",)), store=RunStore())
    rows = {r["metric"]: r for r in report["metrics"]}
    assert {"val_acc", "val_loss", "train_loss", WEIGHTS} <= set(rows)
    assert all(r["identical_on_rerun"] is True for r in rows.values())
    assert rows["val_loss"]["differs_across_seeds"] is True and rows[WEIGHTS]["differs_across_seeds"] is True
    assert rows["val_loss"]["identical_across_devices"] is None  # one device: nothing to compare
    runs = pd.DataFrame(report["runs"])
    assert len(runs) == 2 * 2 + 1 and (runs["state"] == "completed").all()
    finals = []
    for rid in runs.loc[(runs["threads"] == 1) & ~runs["variant"].str.endswith("(re-run)"), "run_id"]:
        ep = RunStore().metrics(rid, "epoch")
        finals.append(float(ep["val_loss"].iloc[-1]))
    assert rows["val_loss"]["seed_std"] == pytest.approx(np.std(finals, ddof=1))
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_cli_experiment_plan_json_and_show(data_dir, capsys):
    from kdcore.cli import main

    argv = ["experiment", "plan", "--pair", "digits", "--seeds", "0", "--temperatures", "1,4", "--lams", "0.5,0.9"]
    argv += ["--epochs", "1", "--train-size", "64", "--val-size", "64", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "plan" and report["chosen"]["lam"]["value"] in (0.5, 0.9)
    assert main(["experiment", "show", report["experiment_id"]]) == 0
    assert "chosen T" in capsys.readouterr().out
    assert main(["experiment", "plan", "--pair", "digits", "--temperatures", "4"]) == 2
    assert "at least two values" in capsys.readouterr().err
