"""Workshop workspaces in the run store (kdcore/jobs/workspace.py) and N workers draining one queue."""

import sqlite3
import threading
import time

import pytest

from kdcore.jobs import JobConfig, RunStore, submit
from kdcore.jobs import worker as worker_mod
from kdcore.jobs.protocols import queue_protocol
from kdcore.jobs.workspace import QueueLimitError, WorkspaceError, check_name
from tests.helpers.toys import TOY


def _cfg(**kw):
    return JobConfig(**{"pair": TOY, "objective": "kd", "epochs": 1, "batch_size": 64, "val_size": 64, **kw})


def _snapshot(root):
    """Every row of runs and protocols, and the run folders: what 'nothing stored changes' compares."""
    con = sqlite3.connect(root / "runs.sqlite")
    try:
        runs = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
        protocols = con.execute("SELECT * FROM protocols ORDER BY id").fetchall()
    finally:
        con.close()
    return runs, protocols, sorted(p.name for p in (root / "runs").iterdir())


def test_two_workspaces_never_see_each_others_runs(data_dir):
    ada, bob = RunStore(workspace="ada"), RunStore(workspace="bob")
    a = [submit(_cfg(seed=s), store=ada, start_worker=False) for s in (0, 1)]
    b = submit(_cfg(seed=7), store=bob, start_worker=False)
    pa = queue_protocol(_cfg(), temperatures=[2.0], store=ada, start_worker=False)
    assert set(ada.list_runs()["id"]) == set(a) | {r["run_id"] for r in ada.get_protocol(pa)["runs"]}
    assert list(bob.list_runs()["id"]) == [b] and bob.list_protocols() == []
    assert [p["id"] for p in ada.list_protocols()] == [pa] and ada.list_protocols()[0]["workspace"] == "ada"
    for call in (bob.get_run, bob.metrics, bob.request_cancel, bob.delete_run, lambda r: bob.load_student(r)):
        with pytest.raises(WorkspaceError, match=r"no run '.*' in workspace 'bob'.*their own workspace"):
            call(a[0])
    with pytest.raises(WorkspaceError, match="no protocol"):
        bob.get_protocol(pa)
    everyone = RunStore()  # the single-user app and the instructor: every run, with its workspace
    table = everyone.list_runs()
    assert len(table) == 5 and dict(zip(table["id"], table["workspace"]))[b] == "bob"
    assert everyone.get_run(a[0])["workspace"] == "ada" and len(everyone.list_protocols()) == 1
    assert ada.get_run(a[0])["state"] == "queued"  # untouched by bob's refused calls


def test_chain_stages_belong_to_the_chain_runs_workspace(data_dir):
    chain = RunStore(workspace="ada").create_run(_cfg(), state="queued")
    stage = RunStore().create_run(_cfg(), state="running", chain_id=chain, chain_stage=1)  # as the worker does
    assert RunStore(workspace="ada").get_run(stage)["workspace"] == "ada"


@pytest.mark.parametrize("bad", ["", "  ", "ada lovelace", "a/b", "x" * 33, "ça", None, 3])
def test_a_malformed_workspace_name_is_refused_clearly(bad):
    with pytest.raises(WorkspaceError, match=r"1 to 32 letters, digits, '-' or '_'.*Got"):
        check_name(bad)


def test_a_workspace_name_keeps_its_form():
    assert check_name(" team_2-b ") == "team_2-b" and check_name("x" * 32) == "x" * 32


def test_over_the_queue_limit_a_participant_gets_a_clear_error_and_nothing_changes(data_dir):
    ada = RunStore(workspace="ada", max_active=2)
    first = submit(_cfg(seed=0), store=ada, start_worker=False)
    submit(_cfg(seed=1), store=ada, start_worker=False)
    RunStore(workspace="bob", max_active=2).create_run(_cfg(), state="queued")  # bob's runs do not count
    before = _snapshot(data_dir)
    with pytest.raises(QueueLimitError, match=r"at most 2 runs queued or running.*it has 2.*cancel one"):
        submit(_cfg(seed=2), store=ada, start_worker=False)
    with pytest.raises(QueueLimitError, match=r"it has 2, so 2 more runs"):
        queue_protocol(_cfg(), temperatures=[2.0], store=ada, start_worker=False)  # baseline + 1: none queued
    assert _snapshot(data_dir) == before
    ada.request_cancel(first)  # one fewer active: room for one again
    assert ada.get_run(submit(_cfg(seed=3), store=ada, start_worker=False))["state"] == "queued"
    with pytest.raises(QueueLimitError):
        ada.queue_for_resume(first)  # resuming queues a run too
    assert ada.get_run(first)["state"] == "cancelled"


def test_a_store_made_before_workspaces_opens_with_its_runs_in_nobodys_workspace(data_dir):
    rid = RunStore().create_run(_cfg(), state="queued")
    con = sqlite3.connect(data_dir / "runs.sqlite")
    con.execute("ALTER TABLE runs DROP COLUMN workspace")
    con.execute("ALTER TABLE protocols DROP COLUMN workspace")
    con.commit()
    con.close()
    store = RunStore()
    assert store.get_run(rid)["workspace"] is None and store.list_protocols() == []
    assert RunStore(workspace="ada").list_runs().empty


def test_the_queue_limit_and_worker_count_are_checked():
    with pytest.raises(ValueError, match="positive integer"):
        RunStore.__init__(object.__new__(RunStore), workspace="ada", max_active=0)
    with pytest.raises(ValueError, match="KDWB_WORKERS.*positive integer.*'two'"):
        worker_mod.worker_slots("two")
    assert worker_mod.worker_slots("3") == 3 and worker_mod.lock_name(0) == "worker.lock"


def test_n_workers_drain_one_queue_side_by_side_and_train_each_run_once(data_dir, monkeypatch):
    store = RunStore()
    ids = [store.create_run(_cfg(seed=s), state="queued") for s in range(6)]
    trained, live, peak, guard = [], [0], [0], threading.Lock()

    def fake_run_job(config, *, store, run_id, resume=False):  # the runner's frame: lease, train, finish
        lease = store.acquire_lease(run_id)
        with guard:
            trained.append((run_id, threading.get_ident()))
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.15)
        with guard:
            live[0] -= 1
        store.update_run(run_id, state="completed")
        lease.release()

    monkeypatch.setattr("kdcore.jobs.runner.run_job", fake_run_job)
    threads = [threading.Thread(target=worker_mod.work, args=(store, 3)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(r for r, _ in trained) == sorted(ids)  # every run once, none twice
    assert 2 <= peak[0] <= 3 and len({t for _, t in trained}) <= 3  # side by side, never over 3
    assert set(store.list_runs()["state"]) == {"completed"}


def test_the_class_leaderboard_is_each_workspaces_best_per_pair_and_method(data_dir):
    import numpy as np

    from kdcore.jobs.class_board import class_leaderboard

    rng = np.random.default_rng(0)
    expected: dict = {}
    for i in range(14):
        who, method = ["ada", "bob", "cy"][i % 3], ["kd", "dkd"][i % 2]
        acc = round(float(rng.uniform(0.5, 0.9)), 4)
        rid = RunStore(workspace=who).create_run(_cfg(objective=method, seed=i), state="running")
        RunStore().update_run(rid, state="completed", summary={"best_val_acc": acc, "final_val_acc": acc - 0.1})
        best = expected.get((method, who))
        expected[(method, who)] = (max(best[0], acc), best[1] + 1) if best else (acc, 1)
    RunStore().create_run(_cfg(), state="completed")  # nobody's run: not on the board
    RunStore(workspace="dee").create_run(_cfg(), state="failed")  # not completed: not on the board
    board = class_leaderboard(RunStore())
    got = {(r.method, r.workspace): (r._5, r.runs) for r in board.itertuples()}
    assert got == expected
    for (method, who), (acc, _) in expected.items():
        rank = 1 + sum(a > acc for (m, _w), (a, _n) in expected.items() if m == method)
        assert board[(board["method"] == method) & (board["workspace"] == who)]["rank"].item() == rank
    for _, rows in board.groupby(["pair", "method"]):
        assert list(rows["rank"]) == sorted(rows["rank"])  # best first within each pair and method


def test_a_reindexed_run_stays_in_its_workspace(data_dir):
    from kdcore.jobs.store_check import reindex

    rid = RunStore(workspace="ada").create_run(_cfg(), state="queued")
    con = sqlite3.connect(data_dir / "runs.sqlite")
    con.execute("DELETE FROM runs WHERE id=?", (rid,))  # the row lost, its folder and run.json kept
    con.commit()
    con.close()
    reindex(RunStore(), rid)
    assert RunStore(workspace="ada").get_run(rid)["workspace"] == "ada"


def test_submitting_starts_one_worker_per_queued_run_up_to_the_worker_count(data_dir, monkeypatch):
    store = RunStore()
    spawned = []
    monkeypatch.setattr(worker_mod, "_spawn_worker", lambda s: spawned.append(s.root))
    monkeypatch.delenv(worker_mod.WORKERS_ENV, raising=False)
    for s in range(3):
        store.create_run(_cfg(seed=s), state="queued")
    worker_mod.start_worker_process(store)
    assert len(spawned) == 1  # single-user: one worker, as before
    monkeypatch.setenv(worker_mod.WORKERS_ENV, "2")
    worker_mod.start_worker_process(store)
    assert len(spawned) == 1 + 2  # 3 queued, 2 slots
    monkeypatch.setenv(worker_mod.WORKERS_ENV, "8")
    worker_mod.start_worker_process(store)
    assert len(spawned) == 3 + 3 and set(spawned) == {data_dir}


def test_another_workspaces_experiment_report_is_refused(data_dir):
    from kdcore.jobs.experiment_store import create_experiment, load_report, save_report

    ada = RunStore(workspace="ada")
    eid = create_experiment(ada, "plan", TOY, spec={}, planned=1)
    save_report(ada, eid, {"rows": [1]})
    assert load_report(ada, eid) == {"rows": [1]} and load_report(RunStore(), eid) == {"rows": [1]}
    with pytest.raises(WorkspaceError, match="no protocol"):
        load_report(RunStore(workspace="bob"), eid)
