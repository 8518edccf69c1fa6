"""One owner per run: the lease, "interrupted" decided by it, unique step metrics.

Before: two `runs resume RUN_ID` at once both completed (9,599 loss rows for 4,800 steps), and a job
paused longer than the heartbeat limit was shown as interrupted while alive and could be resumed again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from kdcore.jobs import JobConfig
from kdcore.jobs.lease import RunBusyError
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore
from kdcore.jobs.store_check import check_store
from kdcore.jobs.worker import resume
from tests.reliability._cli import ROOT, TINY, cli, env, start

_HOLD = """
import sys, time
from kdcore.jobs.store import RunStore
store = RunStore(sys.argv[1])
lease = store.acquire_lease(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def _holder_process(home, run_id: str) -> subprocess.Popen:
    """Another process that takes the run's lease and keeps it (as a training job does)."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(home), run_id], cwd=ROOT, env=env(home), stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_a_second_owner_is_refused_with_who_holds_the_run(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig(**TINY), state="interrupted")
    holder = _holder_process(data_dir, rid)
    try:
        with pytest.raises(RunBusyError) as err:
            store.acquire_lease(rid)
        assert f"pid {holder.pid}" in str(err.value) and "on host" in str(err.value) and "since" in str(err.value)
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
            resume(rid, store=store, start_worker=False)
        with pytest.raises(RunBusyError):
            run_job(JobConfig(**TINY), store=store, run_id=rid, resume=True)
        assert store.get_run(rid)["state"] == "interrupted"  # the refused owner changed nothing
    finally:
        holder.kill()
        holder.wait()
    assert store.lease_holder(rid) is None  # the kernel freed it with the process
    store.acquire_lease(rid).release()


def _pause_outside_a_write(proc: subprocess.Popen, home, tries: int = 100) -> None:
    """SIGSTOP `proc` at a moment it holds no write transaction of the store: a job paused inside one keeps
    the database locked for everyone (SQLite's lock belongs to the paused process), which is not what the
    test is about. Pause, probe for the write lock, and let it run on a little when it holds it."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        con = sqlite3.connect(home / "runs.sqlite", timeout=0.2, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # locked by the paused job
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        finally:
            con.close()
    raise AssertionError(f"the job held the store's write lock at each of {tries} pauses")


def test_a_paused_job_is_not_interrupted_nor_resumable_while_it_lives(tmp_path):
    home = tmp_path / "kdwb"
    proc = start(
        "distill", "--pair", TINY["pair"], "--epochs", "400", "--batch-size", "16", "--val-size", "32", home=home
    )
    try:
        assert proc.stdout is not None
        rid = proc.stdout.readline().split()[1]
        time.sleep(0.5)
        _pause_outside_a_write(proc, home)  # paused, alive
        store = RunStore(home)
        store.update_run(rid, heartbeat=time.time() - 3600, host="another-host")  # heartbeat long missed
        assert store.reap_stale() == [] and store.get_run(rid)["state"] == "running"
        p = cli("runs", "resume", rid, home=home)
        assert p.returncode == 2 and f"pid {proc.pid}" in p.stderr and "being trained by another process" in p.stderr
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert store.reap_stale() == [rid] and store.get_run(rid)["state"] == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stopped_run(store: RunStore, **fields: object) -> str:
    """A run cancelled after a few steps (resumable)."""
    n = {"steps": 0}

    def count(ev: dict) -> None:
        n["steps"] += ev["event"] == "step"

    cfg = JobConfig(**{**TINY, "epochs": 30, "batch_size": 16, **fields})
    res = run_job(cfg, store=store, callback=count, cancel=lambda: n["steps"] >= 3)
    assert res.state == "cancelled"
    return str(res.run_id)


@pytest.mark.slow
def test_two_resumes_at_once_exactly_one_trains(data_dir):
    store = RunStore()
    rid = _stopped_run(store)
    procs = [start("runs", "resume", rid, "--json", home=data_dir) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert "being trained by another process" in loser[0] or "is completed" in loser[0], loser
    run = store.get_run(rid)
    assert run["state"] == "completed"
    con = sqlite3.connect(data_dir / "runs.sqlite")
    losses = con.execute(
        "SELECT COUNT(*), COUNT(DISTINCT step) FROM metrics WHERE run_id=? AND level='step' AND name='loss'", (rid,)
    ).fetchone()
    con.close()
    assert losses[0] == losses[1] == run["total_steps"]


@pytest.mark.slow
def test_concurrent_jobs_from_four_processes_leave_a_consistent_store(tmp_path):
    home = tmp_path / "kdwb"
    procs = [
        start(
            "distill",
            "--pair",
            TINY["pair"],
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--val-size",
            "32",
            "--seed",
            str(s),
            "--json",
            home=home,
        )
        for s in range(4)
    ]
    outs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert [o["state"] for o in outs] == ["completed"] * 4
    store = RunStore(home)
    report = check_store(home)
    assert report.ok, report.to_dict()
    for o in outs:
        run = store.get_run(o["run_id"])
        steps = store.metrics(o["run_id"], "step")
        assert run["state"] == "completed" and len(steps) == run["total_steps"] == steps["step"].nunique()
        assert store.load_student(o["run_id"])  # verified against its sha256


def test_step_metrics_are_unique_per_run_level_name_and_step(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig(**TINY), state="running", seed=0)
    store.log_metrics(rid, [("step", 1, 1, "loss", 2.0), ("step", 2, 1, "loss", 1.5)])
    store.log_metrics(rid, [("step", 2, 1, "loss", 1.25), ("step", 3, 1, "loss", 1.0)])  # step 2 replayed
    assert store.metrics(rid)["loss"].tolist() == [2.0, 1.25, 1.0]
    con = sqlite3.connect(data_dir / "runs.sqlite")
    assert con.execute("SELECT COUNT(*) FROM metrics WHERE run_id=?", (rid,)).fetchone()[0] == 3
    con.close()


def test_a_store_with_duplicate_metrics_is_migrated_keeping_the_last_row(tmp_path):
    home = tmp_path / "old"
    home.mkdir()
    con = sqlite3.connect(home / "runs.sqlite")
    con.execute(
        "CREATE TABLE metrics (run_id TEXT NOT NULL, level TEXT NOT NULL, step INTEGER NOT NULL, "
        "epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL)"
    )
    con.execute("CREATE INDEX metrics_run ON metrics (run_id, level, step)")
    con.executemany(
        "INSERT INTO metrics VALUES (?,?,?,?,?,?)",
        [("r", "step", 1, 1, "loss", 3.0), ("r", "step", 1, 1, "loss", 2.0), ("r", "step", 2, 1, "loss", 1.0)],
    )
    con.commit()
    con.close()
    store = RunStore(home)
    assert store.metrics("r")["loss"].tolist() == [2.0, 1.0]
    with pytest.raises(Exception):
        store._connect().execute("INSERT INTO metrics VALUES ('r', 'step', 2, 1, 'loss', 9.0)")


def test_lease_holder_reads_none_after_release(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig(**TINY))
    lease = store.acquire_lease(rid)
    holder = store.lease_holder(rid)
    assert holder is not None and holder["pid"] == os.getpid()
    lease.release()
    assert store.lease_holder(rid) is None


def test_the_app_shows_who_trains_a_run(data_dir):
    from app.runs import owner_text

    store = RunStore()
    rid = store.create_run(JobConfig(**TINY), state="running")
    assert owner_text(store, rid) is None
    lease = store.acquire_lease(rid)
    text = owner_text(store, rid)
    assert text is not None and text.startswith(f"trained by pid {os.getpid()} on ")
    lease.release()
    assert owner_text(store, rid) is None
