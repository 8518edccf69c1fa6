"""The leaderboard kept in the run store: the same settings asked again are read, not trained; runs with
the same config and seed are reused; queued leaderboards go through the worker and read back the same."""

import pandas as pd
import pytest

from kdcore.jobs import RunStore, worker
from kdcore.jobs.leaderboard import compare_methods, leaderboard_configs, leaderboard_status, queue_leaderboard
from kdcore.jobs.leaderboard_cache import config_key, plan_key
from tests.helpers.toys import TOY

BUDGET = {"epochs": 1, "train_size": 64, "batch_size": 32}


def _count_runs(monkeypatch):
    """Count the runs trained (run_job calls) from here on."""
    from kdcore.jobs import runner

    calls = []
    real = runner.run_job

    def counting(cfg, **kw):
        calls.append((cfg.objective, cfg.seed))
        return real(cfg, **kw)

    monkeypatch.setattr(runner, "run_job", counting)
    return calls


def test_the_same_leaderboard_asked_again_is_read_without_training(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    calls = _count_runs(monkeypatch)
    first = compare_methods(TOY, ["kd"], [0, 1], base=BUDGET, store=store)
    assert len(calls) == 4 and first.trained == 4 and not first.cached
    again = compare_methods(TOY, "kd", [0, 1], base=BUDGET, store=store)
    assert len(calls) == 4, "the second call must not train"
    assert again.cached and again.trained == 0 and again.protocol_id == first.protocol_id
    assert again.budget == first.budget
    pd.testing.assert_frame_equal(again.table, first.table)
    assert len(store.list_runs()) == 4 and len(store.list_protocols()) == 1


def test_runs_with_the_same_config_are_reused_and_new_ones_trained(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    calls = _count_runs(monkeypatch)
    first = compare_methods(TOY, ["kd"], [0], base=BUDGET, store=store)
    wider = compare_methods(TOY, ["kd", "dkd"], [0, 1], base=BUDGET, store=store)
    assert not wider.cached and wider.trained == 4  # ce and kd seed 0 reused: ce, kd, dkd seed 1, dkd seed 0
    assert sorted(calls[2:]) == sorted([("ce", 1), ("kd", 1), ("dkd", 0), ("dkd", 1)])
    by = dict(zip(zip(wider.runs["variant"], wider.runs["seed"]), wider.runs["run_id"]))
    old = dict(zip(zip(first.runs["variant"], first.runs["seed"]), first.runs["run_id"]))
    assert by[("ce", 0)] == old[("ce", 0)] and by[("kd", 0)] == old[("kd", 0)]
    other_budget = compare_methods(TOY, ["kd"], [0], base={**BUDGET, "lr": 0.02}, store=store)
    assert other_budget.trained == 2  # a different budget is a different config
    fresh = compare_methods(TOY, ["kd"], [0], base=BUDGET, store=store, reuse=False)
    assert fresh.trained == 2 and not fresh.cached


def test_the_key_is_the_settings_not_the_names():
    plan = leaderboard_configs(TOY, ["ce", "kd"], [0, 1], BUDGET)
    same = leaderboard_configs(TOY, ["ce", "kd"], [0, 1], dict(BUDGET))
    assert plan_key(plan) == plan_key(same)
    assert plan_key(plan) != plan_key(leaderboard_configs(TOY, ["ce", "kd"], [0, 2], BUDGET))
    assert plan_key(plan) != plan_key(leaderboard_configs(TOY, ["ce", "kd"], [0, 1], {**BUDGET, "epochs": 2}))
    cfg = plan[1][1]
    from dataclasses import replace

    assert config_key(cfg) == config_key(replace(cfg, name="another name"))
    assert config_key(cfg) == config_key(cfg.to_dict())  # a stored config reads the same
    assert config_key(cfg) != config_key(replace(cfg, seed=7))


def test_a_queued_leaderboard_runs_on_the_worker_and_reads_back_like_compare(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    pid = queue_leaderboard(TOY, ["kd", "dkd"], [0, 1], base=BUDGET, store=store, start_worker=False)
    res, done, total = leaderboard_status(store, pid)
    assert (done, total) == (0, 6) and list(res.table["n_seeds"]) == [0, 0, 0]
    assert queue_leaderboard(TOY, ["kd", "dkd"], [0, 1], base=BUDGET, store=store, start_worker=False) == pid
    assert worker.work(store) == 0
    res, done, total = leaderboard_status(store, pid)
    assert (done, total) == (6, 6) and list(res.table["n_seeds"]) == [2, 2, 2]
    calls = _count_runs(monkeypatch)
    direct = compare_methods(TOY, ["kd", "dkd"], [0, 1], base=BUDGET, store=store)
    assert calls == [] and direct.cached and direct.protocol_id == pid
    pd.testing.assert_frame_equal(direct.table, res.table)
    # a leaderboard sharing runs with it queues only the runs it lacks
    pid2 = queue_leaderboard(TOY, ["dkd"], [0, 1, 2], base=BUDGET, store=store, start_worker=False)
    runs = store.protocol_runs(pid2)
    assert list(runs["state"]) == ["completed", "completed", "queued", "completed", "completed", "queued"]


def test_the_leaderboard_is_deterministic_for_fixed_seeds(tmp_path):
    a = compare_methods(TOY, ["kd"], [0, 1], base=BUDGET, store=RunStore(tmp_path / "a"))
    b = compare_methods(TOY, ["kd"], [0, 1], base=BUDGET, store=RunStore(tmp_path / "b"))
    cols = ["method", "best_mean", "best_std", "final_mean", "final_std", "gain_mean"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert not a.cached and not b.cached
    with pytest.raises(Exception, match="Did you mean"):
        queue_leaderboard(TOY, ["kdd"], [0], store=RunStore(tmp_path / "c"), start_worker=False)


def test_methods_needing_a_layer_map_get_the_deepest_default_layers():
    from kdcore.jobs.leaderboard import _plan, layer_defaults
    from kdcore.jobs.resolve import resolve_pair

    pair = resolve_pair(TOY)
    s, t = pair.student.default_layers(), pair.teacher.default_layers()
    assert layer_defaults(["ce", "kd", "at", "feature_l2"], pair) == {
        "at": {"layers": {s[-1]: t[-1]}},
        "feature_l2": {"layers": {s[-1]: t[-1]}},
    }
    names, _, plan, loaded = _plan(TOY, ["kd", "feature_l2"], [0], BUDGET)
    cfgs = dict(plan)
    assert names == ["ce", "kd", "feature_l2"] and loaded is not None
    assert cfgs["feature_l2"].params == {"layers": {s[-1]: t[-1]}} and cfgs["kd"].params == {}
    assert _plan(TOY, ["kd"], [0], BUDGET)[3] is None  # no layer map needed: the pair is not loaded


def test_a_method_gets_its_tasks_own_defaults_on_multilabel_data():
    from kdcore.jobs.leaderboard import _check_fits, _plan

    names, _, plan, loaded = _plan("shapes_multilabel", ["cakd", "bkd"], [0], {"epochs": 1})
    cfgs = dict(plan)
    assert cfgs["cakd"].params == {"rule": "labels"} and cfgs["bkd"].params == {}
    _check_fits(plan, loaded)  # with the task's default cakd fits multi-label data (rule 'target' would not)


def test_a_run_still_training_is_no_result_yet(tmp_path):
    store = RunStore(tmp_path)
    pid = queue_leaderboard(TOY, ["kd"], [0], base=BUDGET, store=store, start_worker=False)
    assert worker.work(store) == 0
    kd = store.protocol_runs(pid).set_index("variant").loc["kd", "run_id"]
    store.update_run(kd, state="running", pid=None)  # as seen while its epochs are being written
    res, done, total = leaderboard_status(store, pid)
    assert (done, total) == (1, 2)
    assert res.table.set_index("method").loc["kd", "n_seeds"] == 0
    assert res.table.set_index("method").loc["ce", "n_seeds"] == 1
