"""Background workers: queue, poll, cancel, SIGKILL mid-run, reopen, resume.

The worker-process tests are slow (real subprocesses); the worker loop itself is also run in this
process, so the quick loop (`-m "not slow"`) covers the queue.
"""

import json
import os
import signal
from pathlib import Path

import pytest

from kdcore.jobs import JobConfig, RunStore, cancel, compare, get_status, resume, run_job, submit, wait
from kdcore.jobs.worker import start_worker_process, work
from tests.helpers.toys import TOY
from tests.helpers.waiting import wait_until


@pytest.fixture
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # worker processes: no thread oversubscription on a busy machine


def _cfg(**kw):
    return JobConfig(
        **{"pair": TOY, "objective": "kd", "epochs": 2, "batch_size": 64, "val_size": 64, "probe_size": 32, **kw}
    )


def test_the_worker_loop_runs_the_queue_in_order(data_dir):
    store = RunStore()
    ids = [submit(_cfg(seed=s, epochs=1), store=store, start_worker=False) for s in (0, 1)]
    bad = submit(_cfg(objective="at", params={"layers": {"fc1": "fc1"}}), store=store, start_worker=False)
    never = submit(_cfg(seed=9), store=store, start_worker=False)
    cancel(never, store=store)
    assert [store.get_run(i)["state"] for i in (*ids, bad)] == ["queued"] * 3
    assert work(store) == 0 and store.next_queued() is None
    runs = [store.get_run(i) for i in ids]
    assert [r["state"] for r in runs] == ["completed"] * 2 and all(r["pid"] == os.getpid() for r in runs)
    assert runs[0]["created"] <= runs[1]["created"] and runs[0]["updated"] <= runs[1]["updated"]
    assert store.get_run(never)["state"] == "cancelled" and store.get_run(never)["step"] == 0
    r = store.get_run(bad)
    assert r["state"] == "failed" and "conv features" in r["error"]
    assert list(compare(ids, store=store)["id"]) == ids


@pytest.mark.slow
def test_jobs_queue_run_in_the_background_and_can_be_cancelled(data_dir, one_thread):
    store = RunStore()
    ids = [submit(_cfg(seed=s), store=store) for s in (0, 1)]
    bad = submit(_cfg(objective="at", params={"layers": {"fc1": "fc1"}}), store=store)
    long = submit(_cfg(epochs=500, batch_size=16), store=store)
    never = submit(_cfg(seed=9), store=store, start_worker=False)
    cancel(never, store=store)  # a queued job is cancelled at once
    assert store.get_run(never)["state"] == "cancelled"
    wait_until(lambda: get_status(long, store=store)["step"] > 0, timeout=120, what="the long job's first step")
    extra = start_worker_process(store)  # a second worker leaves the queue to the first
    assert extra.wait(timeout=60) == 0
    cancel(long, store=store)
    assert wait(long, store=store, timeout=60)["state"] == "cancelled"
    runs = [store.get_run(i) for i in ids]
    assert [r["state"] for r in runs] == ["completed"] * 2 and all(r["pid"] != os.getpid() for r in runs)
    assert [r["total_steps"] for r in runs] == [8, 8]  # written by the worker's runner (256 / 64 × 2)
    assert store.get_run(never)["total_steps"] is None  # never started: unknown, not guessed
    table = compare(ids, store=store)
    assert list(table["id"]) == ids and table["final_val_acc"].notna().all()
    r = store.get_run(bad)
    assert r["state"] == "failed" and "conv features" in r["error"]


@pytest.mark.slow
def test_sigkill_mid_run_leaves_the_store_readable_and_the_run_resumable(data_dir, one_thread):
    store = RunStore()
    earlier = run_job(_cfg(seed=4), store=store).run_id
    before = store.metrics(earlier, "epoch")
    rid = submit(_cfg(epochs=400, batch_size=16, seed=5), store=store)
    wait_until(
        lambda: store.get_run(rid)["epoch"] >= 2 and store.get_run(rid)["state"] == "running",
        timeout=120,
        what="two finished epochs of the running job",
    )
    pid = store.get_run(rid)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: RunStore().get_run(rid)["state"] == "interrupted",
        timeout=30,
        what="the killed run to be marked interrupted",
    )
    reopened = RunStore()
    run = reopened.get_run(rid)
    assert run["state"] == "interrupted" and "resume" in run["error"]
    assert reopened.get_run(earlier)["state"] == "completed"
    assert reopened.metrics(earlier, "epoch").equals(before)
    steps = reopened.metrics(rid, "step")
    assert len(steps) > 0 and steps["loss"].notna().all()
    # resume from the last finished epoch, with fewer epochs left to keep the test short (through the
    # store's update_run; the config column holds the config's JSON)
    cfg = dict(run["config"], epochs=run["epoch"] + 1)
    reopened.update_run(rid, config=json.dumps(cfg, sort_keys=True))
    assert reopened.get_run(rid)["config"]["epochs"] == cfg["epochs"]
    resume(rid, store=reopened)
    r = wait(rid, store=reopened, timeout=120)
    assert r["state"] == "completed", r["error"]
    ep = reopened.metrics(rid, "epoch")
    # epochs 0 (the student before training) .. cfg["epochs"], each with its validation accuracy
    assert ep["epoch"].tolist() == list(range(cfg["epochs"] + 1)) and ep["val_acc"].notna().all()


def test_the_worker_environment_adds_no_path(monkeypatch, tmp_path):
    """No sys.path-style edit: kdcore comes from the install or the caller's PYTHONPATH, a user's
    module:factory from the worker's cwd (first on sys.path under `python -m`)."""
    from kdcore.jobs.worker import _worker_env

    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert _worker_env()["PYTHONPATH"] == str(tmp_path)
    monkeypatch.delenv("PYTHONPATH")
    assert "PYTHONPATH" not in _worker_env()


def test_a_worker_started_outside_the_checkout_finds_kdcore_and_a_pair_in_its_folder(
    data_dir, one_thread, monkeypatch, tmp_path
):
    """Not installed, PYTHONPATH at the checkout, started in the user's folder: kdcore comes from
    PYTHONPATH and the user's module:factory pair from the folder the worker starts in."""
    root = Path(__file__).resolve().parents[1]
    user = tmp_path / "project"
    user.mkdir()
    (user / "user_pairs_for_worker.py").write_text("from tests.helpers.toys import toy_pair as make\n")
    monkeypatch.chdir(user)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    store = RunStore()
    rid = submit(_cfg(pair="user_pairs_for_worker:make", epochs=1), store=store, start_worker=False)
    assert start_worker_process(store).wait(timeout=120) == 0
    run = store.get_run(rid)
    assert run["state"] == "completed", run.get("error") or (store.root / "worker.log").read_text()


def test_spawn_detached_runs_python_in_its_own_session_logging_to_the_store(tmp_path, monkeypatch):
    """The queue worker's and the executors' pool processes start through spawn_detached."""
    from kdcore.jobs.worker import spawn_detached

    store = RunStore(tmp_path / "home")
    (store.root / "worker.log").write_bytes(b"before\n")
    monkeypatch.setenv("KDWB_SPAWN_PROBE", "42")
    proc = spawn_detached(store, ["-c", "import os; print(os.getcwd(), os.getsid(0), os.environ['KDWB_SPAWN_PROBE'])"])
    assert proc.wait(timeout=30) == 0
    first, line = (store.root / "worker.log").read_text().splitlines()
    cwd, sid, probe = line.split()
    assert first == "before" and cwd == os.getcwd() and probe == "42"
    assert int(sid) == proc.pid != os.getsid(0)  # a session leader: not this session
