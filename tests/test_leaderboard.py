"""The method leaderboard (kdcore.jobs.leaderboard): same budget for every method, the table against
an independent computation from the stored runs, the gain's interval, refusals, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdcore.cli import main
from kdcore.jobs import RunStore
from kdcore.jobs.leaderboard import BUDGET_FIELDS, compare_methods, leaderboard_configs, t_interval
from kdcore.validation import InvalidParameterError
from tests.helpers.toys import TOY

BUDGET = {"epochs": 2, "train_size": 128, "lr": 0.01, "batch_size": 32}
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("kdwb"))
    return compare_methods(TOY, ["kd", "dkd", "hinton"], SEEDS, base=BUDGET, store=store), store


def _stored_values(store, run_id):
    ep = store.metrics(run_id, "epoch")
    vals = ep.loc[ep["epoch"] >= 1, "val_acc"].dropna().to_numpy()  # epoch 0: the student before training
    return vals.max(), vals[-1]


def test_every_method_and_seed_ran_on_the_same_budget(board):
    res, store = board
    runs = res.runs
    assert list(dict.fromkeys(runs["variant"])) == ["ce", "kd", "dkd"]  # the floor first, the alias resolved once
    assert sorted(zip(runs["variant"], runs["seed"])) == sorted((m, s) for m in ("ce", "kd", "dkd") for s in SEEDS)
    assert (runs["state"] == "completed").all()
    configs = {(r.variant, r.seed): store.get_run(r.run_id)["config"] for r in runs.itertuples()}
    for (method, seed), cfg in configs.items():
        assert cfg["objective"] == method and cfg["seed"] == seed
        assert {k: cfg[k] for k in BUDGET} == BUDGET
        assert {k: cfg[k] for k in BUDGET_FIELDS} == res.budget
    assert configs[("ce", 0)]["teacher_cache"] is False
    members = store.protocol_runs(res.protocol_id)
    assert list(members["run_id"]) == list(runs["run_id"])
    assert store.get_protocol(res.protocol_id)["methods"] == ["ce", "kd", "dkd"]


def test_table_equals_an_independent_numpy_computation(board):
    res, store = board
    table = res.table.set_index("method")
    values = {
        (r.variant, r.seed): _stored_values(store, r.run_id) for r in res.runs.itertuples()
    }  # (method, seed) -> (best, final)
    for method in ("ce", "kd", "dkd"):
        summaries = [store.get_run(r.run_id)["summary"] for r in res.runs.itertuples() if r.variant == method]
        wall = np.mean([x["steps"] / x["steps_per_s"] for x in summaries])
        assert table.loc[method, "wall_s"] == pytest.approx(wall)
        best = np.array([values[(method, s)][0] for s in SEEDS])
        final = np.array([values[(method, s)][1] for s in SEEDS])
        floor = np.array([values[("ce", s)][0] for s in SEEDS])
        row = table.loc[method]
        assert row["n_seeds"] == 3 and row["metric"] == "val_acc"
        assert row["best_mean"] == pytest.approx(best.mean()) and row["best_std"] == pytest.approx(best.std(ddof=1))
        assert row["final_mean"] == pytest.approx(final.mean())
        assert row["final_std"] == pytest.approx(final.std(ddof=1))
        d = best - floor
        assert row["gain_mean"] == pytest.approx(d.mean())
        if d.std() > 0:
            low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
            assert (row["gain_low"], row["gain_high"]) == (pytest.approx(low), pytest.approx(high))
    means = table["best_mean"]
    for method, mean in means.items():
        assert table.loc[method, "rank"] == 1 + (means > mean).sum()  # rank 1: the highest accuracy


def test_ranking_by_another_epoch_metric(board):
    from kdcore.jobs.leaderboard import leaderboard_table

    res, store = board
    table = leaderboard_table(store, res.runs, metric="val_loss").set_index("method")
    for method in ("ce", "kd", "dkd"):
        best = []
        for r in res.runs.itertuples():
            if r.variant == method:
                ep = store.metrics(r.run_id, "epoch")
                best.append(ep.loc[ep["epoch"] >= 1, "val_loss"].min())  # a loss: the lowest is best
        assert table.loc[method, "metric"] == "val_loss" and table.loc[method, "best_mean"] == pytest.approx(
            np.mean(best)
        )
    means = table["best_mean"]
    assert all(table.loc[m, "rank"] == 1 + (means < v).sum() for m, v in means.items())
    with pytest.raises(InvalidParameterError, match="'metric'"):
        compare_methods(TOY, ["kd"], [0], metric="val loss", store=store)


def test_method_params_on_top_of_the_defaults(tmp_path):
    from kdcore.cli import _method_params
    from kdcore.jobs.config import ConfigError

    with pytest.raises(InvalidParameterError, match="not compared"):
        compare_methods(TOY, ["kd"], [0], params={"dkd": {"beta": 2.0}}, store=RunStore(tmp_path))
    assert _method_params(["gkd.prompts=records", "kd.temperature=2"]) == {
        "gkd": {"prompts": "records"},
        "kd": {"temperature": 2},
    }
    with pytest.raises(ConfigError, match="METHOD.KEY=VALUE"):
        _method_params(["temperature=2"])


def test_t_interval_against_scipy_and_by_hand():
    d = np.array([0.01, 0.03, -0.005, 0.02])
    mean, low, high = t_interval(d)
    lo, hi = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert (mean, low, high) == (pytest.approx(d.mean()), pytest.approx(lo), pytest.approx(hi))
    half = 3.182446305284263 * d.std(ddof=1) / 2  # t_{0.975, 3} by hand, n = 4
    assert high - mean == pytest.approx(half)
    one = t_interval(np.array([0.2]))
    assert one[0] == pytest.approx(0.2) and np.isnan(one[1]) and np.isnan(one[2])


def test_a_method_not_fitting_the_task_is_refused_before_anything_runs(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(InvalidParameterError, match=r"token.*causal_lm.*classification"):
        compare_methods(TOY, ["kd", "token"], [0], base={"epochs": 1}, store=store)
    assert store.list_runs().empty and store.list_protocols() == []


def test_unknown_method_names_the_closest_match(tmp_path):
    with pytest.raises(InvalidParameterError, match="Did you mean 'dkd'"):
        compare_methods(TOY, ["kd", "dkdd"], [0], store=RunStore(tmp_path))
    with pytest.raises(InvalidParameterError, match="budget"):
        compare_methods(TOY, ["kd"], [0], base={"temperature": 2.0}, store=RunStore(tmp_path))
    with pytest.raises(InvalidParameterError, match="seeds"):
        compare_methods(TOY, ["kd"], [], store=RunStore(tmp_path))


def test_recipe_budget_for_all_and_its_t_and_lambda_only_for_its_own_objective():
    plan = dict(leaderboard_configs("digits", ["ce", "kd", "dkd"], [0], {"epochs": 2}))
    kd, dkd, ce = plan["kd"], plan["dkd"], plan["ce"]
    assert kd.epochs == dkd.epochs == ce.epochs == 2  # the override
    for f in ("lr", "schedule", "train_size", "batch_size", "seed"):
        assert getattr(kd, f) == getattr(dkd, f) == getattr(ce, f)
    assert (kd.temperature, kd.lam) == (4.0, 0.9)  # the digits recipe's KD settings
    assert (dkd.temperature, dkd.lam, dkd.params) == (None, None, {})  # DKD's own defaults
    assert ce.objective == "ce" and ce.temperature is None


def test_cli_prints_the_table_and_json(data_dir, capsys):
    argv = ["compare", "--pair", TOY, "--methods", "kd", "--seeds", "0,1", "--epochs", "1", "--train-size", "64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "method" in out and "gain vs ce" in out
    assert {line.split()[1] for line in out.splitlines()[1:]} == {"ce", "kd"}
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    table = pd.DataFrame(data["table"])
    assert list(table["method"]) == ["ce", "kd"] and list(table["n_seeds"]) == [2, 2]
    assert data["budget"]["epochs"] == 1 and data["budget"]["train_size"] == 64
    assert len(data["runs"]) == 4
    assert main(["compare", "--pair", TOY, "--methods", "kdd", "--json"]) == 2
    assert "Did you mean 'kd'" in json.loads(capsys.readouterr().out)["error"]
