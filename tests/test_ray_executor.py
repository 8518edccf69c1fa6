"""The Ray executor (kdcore.jobs.ray_executor) on a local Ray with 2 CPUs, started once for the module:
a 6-run protocol gives the local executor's table, a GPU request without GPUs is refused, and a run
whose Ray worker is killed mid-run is interrupted and resumed on the local executor. Ray is an optional
dependency (`pip install -e '.[ray]'`, which `make setup` installs)."""

import json
import os
import signal

import pandas as pd
import pytest

from kdcore.jobs import JobConfig, RunStore, run_protocol
from kdcore.jobs.executors import ExecutorError, LocalExecutor
from tests.helpers.toys import TOY
from tests.helpers.waiting import wait_until

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starting Ray takes ~10 s

BASE = JobConfig(pair=TOY, objective="kd", epochs=1, batch_size=128, val_size=64, probe_size=16)
PLAN = {"temperatures": [2.0, 4.0], "seeds": [0, 1]}  # baseline + 2 temperatures, 2 seeds: 6 runs


@pytest.fixture(scope="module")
def ray_executor():
    from kdcore.jobs.ray_executor import RayExecutor

    ex = RayExecutor(max_running=2)  # starts a local Ray with 2 CPUs, shut down by close()
    yield ex
    ex.close()
    assert not ray.is_initialized()


def _table(res):
    return res.table.drop(columns=["run_ids"])


def test_a_protocol_on_ray_gives_the_local_executors_table(ray_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ray.cluster_resources()["CPU"] == 2
    store = RunStore(tmp_path / "ray")
    on_ray = run_protocol(BASE, **PLAN, store=store, executor=ray_executor)
    local = run_protocol(BASE, **PLAN, store=RunStore(tmp_path / "local"), executor=LocalExecutor(workers=1))
    assert len(on_ray.runs) == 6 and (on_ray.runs["state"] == "completed").all()
    pd.testing.assert_frame_equal(_table(on_ray), _table(local))
    for rid in on_ray.runs["run_id"]:  # metrics and the student's weights landed in the submitting store
        assert not store.metrics(rid, "epoch").empty and "student.safetensors" in set(store.artifacts(rid)["name"])


def test_the_leaderboard_on_ray_gives_the_local_executors_table(ray_executor, tmp_path, monkeypatch):
    from kdcore.jobs.leaderboard import compare_methods

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    budget = {"epochs": 1, "train_size": 128, "batch_size": 64}
    on_ray = compare_methods(TOY, ["kd"], [0, 1], base=budget, store=RunStore(tmp_path / "r"), executor=ray_executor)
    local = compare_methods(TOY, ["kd"], [0, 1], base=budget, store=RunStore(tmp_path / "l"), executor=LocalExecutor())
    drop = ["wall_s", "run_ids"]  # training time and run ids differ; every metric, gain and rank must not
    pd.testing.assert_frame_equal(on_ray.table.drop(columns=drop), local.table.drop(columns=drop))
    assert (on_ray.runs["state"] == "completed").all() and len(on_ray.runs) == 4


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_and_nothing_is_queued(ray_executor, tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ExecutorError, match=r"ask for a GPU .* 0 GPUs\)\. Nothing was queued"):
        ray_executor.submit([BASE, JobConfig(pair=TOY, device="cuda")], store=store)
    assert store.list_runs().empty


def test_killing_the_ray_worker_mid_run_leaves_an_interrupted_run_that_resumes_elsewhere(ray_executor, tmp_path):
    store = RunStore(tmp_path)
    (rid,) = ray_executor.submit([JobConfig(pair=TOY, objective="kd", epochs=400, batch_size=16, seed=5)], store=store)
    wait_until(
        lambda: store.get_run(rid)["state"] == "running" and (store.get_run(rid)["epoch"] or 0) >= 2,
        timeout=120,
        what="two finished epochs on the Ray worker",
    )
    os.kill(store.get_run(rid)["pid"], signal.SIGKILL)  # the Ray worker process training the run
    (row,) = ray_executor.wait([rid], store=store, timeout=60)
    assert row["state"] == "interrupted" and f"runs resume {rid}" in row["error"]
    # resume on the local executor, with fewer epochs left to keep the test short
    cfg = dict(row["config"], epochs=row["epoch"] + 1)
    store.update_run(rid, config=json.dumps(cfg, sort_keys=True))
    local = LocalExecutor(workers=1)
    (done,) = local.wait(local.resume([rid], store=store), store=store, timeout=120)
    assert done["state"] == "completed", done["error"]
    ep = store.metrics(rid, "epoch")
    assert ep["epoch"].max() == cfg["epochs"]
    assert ep.loc[ep["epoch"] >= 1, "val_acc"].notna().sum() == cfg["epochs"]  # epoch 0: before training
