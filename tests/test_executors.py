"""Executors (kdcore.jobs.executors): the interface's bookkeeping in this process, refusals of bad
input, and the local pool of worker processes giving the same protocol table with 2 workers as with 1."""

import os
import socket
import sys

import pandas as pd
import pytest

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore, run_protocol
from kdcore.jobs.executors import (
    Executor,
    ExecutorError,
    LocalExecutor,
    check_workers,
    make_executor,
    max_workers,
    run_batch,
)
from tests.helpers.toys import TOY

BASE = JobConfig(pair=TOY, objective="kd", epochs=1, batch_size=128, val_size=64, probe_size=16)
PLAN = {"temperatures": [2.0, 4.0], "seeds": [0, 1]}  # baseline + 2 temperatures, 2 seeds: 6 runs


class InProcess(Executor):
    """An executor whose 'worker' is this process: the interface's bookkeeping without subprocesses."""

    def start(self, run_ids, store):
        run_batch(store, run_ids)


def _table(res):
    return res.table.drop(columns=["run_ids"])  # run ids differ; every value and state must not


@pytest.mark.parametrize("bad", [0, -1, max_workers() + 1, 1.5, "2", True, None])
def test_worker_counts_outside_one_to_the_cores_are_refused(bad):
    with pytest.raises(ExecutorError, match=rf"from 1 to {max_workers()} .*Got {bad!r}"):
        check_workers(bad)
    assert check_workers(1) == 1 and check_workers(max_workers()) == max_workers()


def test_make_executor_refuses_unknown_kinds_and_a_ray_address_for_local():
    with pytest.raises(ExecutorError, match="one of local, ray. Got 'spark'"):
        make_executor("spark")
    with pytest.raises(ExecutorError, match="--ray-address goes with --executor ray"):
        make_executor("local", ray_address="auto")
    ex = make_executor("local", workers=1)
    assert isinstance(ex, LocalExecutor) and ex.workers == 1


def test_the_cli_refuses_workers_below_one_or_above_the_cores_before_anything_runs(data_dir, capsys):
    for n in (0, max_workers() + 1):
        code = main(["protocol", "--pair", TOY, "--objective", "kd", "--epochs", "1", "--workers", str(n)])
        assert code == 2 and f"from 1 to {max_workers()}" in capsys.readouterr().err
    assert RunStore().list_runs().empty  # nothing was queued


def test_ray_missing_says_how_to_install_it(monkeypatch, data_dir, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install -e '\.\[ray\]'"):
        make_executor("ray")
    code = main(["protocol", "--pair", TOY, "--objective", "kd", "--executor", "ray"])
    assert code == 2 and "not installed" in capsys.readouterr().err and RunStore().list_runs().empty


def test_a_ray_address_where_nothing_listens_is_refused_at_once_and_nothing_is_queued(data_dir):
    pytest.importorskip("ray")
    from kdcore.jobs.ray_executor import RayExecutor, parse_address

    with socket.socket() as s:  # a free port: bound, then closed, so nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ExecutorError, match=rf"No Ray cluster answers at 127.0.0.1:{port}.*nothing was queued"):
        RayExecutor(address=f"127.0.0.1:{port}")
    with pytest.raises(ExecutorError, match="'auto' or HOST:PORT"):
        parse_address("localhost")
    assert RunStore().list_runs().empty


@pytest.mark.slow  # 4 short runs: ~2-5 s on a loaded machine
def test_the_interface_runs_a_protocol_with_the_same_table_as_run_protocol(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    events = []
    plan = {"temperatures": [2.0], "seeds": [0, 1], "baseline": False}  # 2 runs: kept quick
    direct = run_protocol(BASE, **plan, store=RunStore(tmp_path / "a"))
    store = RunStore(tmp_path / "b")
    via = run_protocol(BASE, **plan, store=store, executor=InProcess(), callback=events.append)
    pd.testing.assert_frame_equal(_table(direct), _table(via))
    assert (via.runs["state"] == "completed").all() and len(via.runs) == 2
    assert [e["done"] for e in events] == [1, 2] and {e["of"] for e in events} == {2}
    members = store.protocol_runs(via.protocol_id)  # every run joined the protocol's record
    assert list(members["run_id"]) == list(via.runs["run_id"])
    with pytest.raises(ValueError, match="cannot go to an executor"):
        run_protocol(BASE, seeds=[0], store=store, executor=InProcess(), pair=object())


def test_cancel_stops_queued_runs_and_a_batch_whose_workers_are_gone_fails_its_unstarted_runs(tmp_path):
    store = RunStore(tmp_path)

    class Nowhere(Executor):
        def start(self, run_ids, store):
            pass  # never runs anything

        def lost(self, store):
            return {rid: "its worker exited" for rid in ids[1:]}

    ex = Nowhere()
    ids = ex.submit([BASE, BASE, BASE], store=store)
    ex.cancel(ids[:1], store=store)
    rows = ex.wait(ids, store=store, timeout=5)
    assert [r["state"] for r in rows] == ["cancelled", "failed", "failed"]
    assert rows[1]["error"] == "its worker exited"
    with pytest.raises(ValueError, match="seed"):  # an invalid config: nothing is queued
        ex.submit([BASE, JobConfig(pair=TOY, seed=-1)], store=store)
    assert len(store.list_runs()) == 3


@pytest.mark.slow
def test_the_local_pool_with_two_workers_gives_the_same_table_as_one(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = run_protocol(BASE, **PLAN, store=RunStore(tmp_path / "one"), executor=LocalExecutor(workers=1))
    store = RunStore(tmp_path / "two")
    two = run_protocol(BASE, **PLAN, store=store, executor=LocalExecutor(workers=2))
    pd.testing.assert_frame_equal(_table(one), _table(two))
    assert (two.runs["state"] == "completed").all()
    pids = {store.get_run(r)["pid"] for r in two.runs["run_id"]}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # trained by the pool's processes


@pytest.mark.slow  # two 1-stage chains on digits: ~2-6 s on a loaded machine
def test_a_chain_on_an_executor_is_one_run_with_the_same_stages_as_run_chain(tmp_path, monkeypatch):
    from dataclasses import replace

    from kdcore.jobs.chain import run_chain

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = JobConfig(pair="digits", objective="takd", epochs=1, max_steps=2, train_size=64, val_size=64, checkpoints=0)
    cfg = replace(cfg, params={"path": "none"})
    direct = run_chain(cfg, store=RunStore(tmp_path / "a"))
    store = RunStore(tmp_path / "b")
    via = run_chain(cfg, store=store, executor=InProcess())
    assert via.state == direct.state == "completed" and len(via.stages) == len(direct.stages) == 1
    assert via.metrics["final_val_acc"] == direct.metrics["final_val_acc"]
    assert via.stages[0].metrics["final_val_loss"] == direct.stages[0].metrics["final_val_loss"]
    assert store.chain_stages(via.chain_id)[0]["id"] == via.stages[0].run_id


@pytest.mark.slow  # waits out the 4 s GCS probe
def test_a_port_that_answers_but_is_no_ray_cluster_is_refused_within_ten_seconds(data_dir):
    pytest.importorskip("ray")
    import time

    from kdcore.jobs.ray_executor import RayExecutor

    with socket.socket() as server:  # accepts TCP connections, never speaks Ray's protocol
        server.bind(("127.0.0.1", 0))
        server.listen()
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match="answers but no Ray cluster does.*nothing was queued"):
            RayExecutor(address=f"127.0.0.1:{server.getsockname()[1]}")
        assert time.monotonic() - t0 < 10
    assert RunStore().list_runs().empty


@pytest.mark.slow  # 4 runs in worker processes, twice
def test_the_leaderboard_from_the_cli_with_two_workers_equals_the_one_worker_leaderboard(data_dir, capsys, monkeypatch):
    import json

    from kdcore.jobs.leaderboard import compare_methods

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    budget = {"epochs": 1, "train_size": 128, "batch_size": 64}
    one = compare_methods(TOY, ["kd"], [0, 1], base=budget, store=RunStore(), executor=LocalExecutor(workers=1))
    args = ["compare", "--pair", TOY, "--methods", "kd", "--seeds", "0,1", "--epochs", "1", "--train-size", "128"]
    assert main([*args, "--batch-size", "64", "--workers", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    two = pd.DataFrame(out["table"])
    keep = ["method", "n_seeds", "best_mean", "final_mean", "gain_mean", "rank", "states"]  # wall_s: timing
    pd.testing.assert_frame_equal(one.table[keep].reset_index(drop=True), two[keep], check_dtype=False)
    assert len(out["runs"]) == 4 and {r["state"] for r in out["runs"]} == {"completed"}


def test_ctrl_c_while_a_protocol_waits_cancels_its_runs(tmp_path):
    class Interrupted(Executor):
        def start(self, run_ids, store):
            pass  # the runs stay queued

        def wait(self, run_ids, **kw):
            raise KeyboardInterrupt

    store = RunStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(BASE, seeds=[0, 1], store=store, executor=Interrupted())
    assert set(store.list_runs()["state"]) == {"cancelled"} and len(store.list_runs()) == 4  # ce and kd, 2 seeds
