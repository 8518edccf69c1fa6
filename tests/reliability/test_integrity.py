"""Integrity you can check: sha256 on every artifact, resume from the last good checkpoint, runs check.

Before: a truncated resume.safetensors turned an interrupted run into a failed one with a traceback;
altered teacher-cache values were used (train loss 33.5 instead of 9.5); a corrupted store listed fine
while integrity_check failed; a deleted store hid its orphaned run folders; a killed run that had saved
no resume state restarted from zero without saying so.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from kdcore.jobs import JobConfig
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import IntegrityError, RunStore
from kdcore.jobs.store_check import check_store
from tests.helpers.waiting import wait_until
from tests.reliability._cli import TINY, cli, start


def _cancelled_at_epoch(store: RunStore, epoch: int, **fields: object) -> str:
    """A run cancelled during `epoch` (its resume state and checkpoints saved at earlier epoch ends)."""
    seen = {"epoch": 0}

    def track(ev: dict) -> None:
        seen["epoch"] = max(seen["epoch"], ev["epoch"])

    cfg = JobConfig(**{**TINY, "epochs": 4, "batch_size": 64, "checkpoints": 4, **fields})
    res = run_job(cfg, store=store, callback=track, cancel=lambda: seen["epoch"] >= epoch)
    assert res.state == "cancelled"
    return str(res.run_id)


def test_a_changed_artifact_is_an_error_naming_the_file(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**TINY), store=store)
    path = store.artifact_path(res.run_id, "student.safetensors")
    tensors = load_file(str(path))
    save_file({k: v + 1 for k, v in tensors.items()}, str(path))  # a valid file, other values
    with pytest.raises(IntegrityError, match=str(path)):
        store.load_student(res.run_id)
    assert check_store(data_dir).bad_artifacts == [f"{path}: does not match its recorded sha256 (run {res.run_id})"]


def test_a_truncated_resume_state_restarts_from_the_last_good_checkpoint(data_dir, monkeypatch):
    import kdcore.jobs.job as job

    monkeypatch.setattr(job, "_RESUME_EVERY_S", 0.0)  # a resume state at every epoch end
    store = RunStore()
    rid = _cancelled_at_epoch(store, 3)
    resume_file = store.artifact_path(rid, "resume.safetensors")
    resume_file.write_bytes(resume_file.read_bytes()[:200])
    store.update_run(rid, state="interrupted")
    p = cli("runs", "resume", rid, "--json", home=data_dir)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    out = json.loads(p.stdout)
    assert out["state"] == "completed"
    assert out["notices"] == [out["notices"][0]] and "last good checkpoint, epoch 2" in out["notices"][0]
    assert "student_epoch2.safetensors" in out["notices"][0] and "resume.safetensors" in out["notices"][0]
    assert store.get_run(rid)["summary"]["notices"] == out["notices"]


def test_a_truncated_resume_state_is_never_a_failed_run(data_dir, monkeypatch):
    """Before the resume, `runs check` names the file and the run stays interrupted."""
    import kdcore.jobs.job as job

    monkeypatch.setattr(job, "_RESUME_EVERY_S", 0.0)
    store = RunStore()
    rid = _cancelled_at_epoch(store, 2)
    store.update_run(rid, state="interrupted")
    resume_file = store.artifact_path(rid, "resume.safetensors")
    resume_file.write_bytes(resume_file.read_bytes()[:-10])
    report = check_store(data_dir)
    assert any(str(resume_file) in b for b in report.bad_artifacts) and not report.ok
    assert store.get_run(rid)["state"] == "interrupted"


def test_a_run_without_resume_state_restarts_from_zero_and_says_so(data_dir):
    store = RunStore()
    rid = _cancelled_at_epoch(store, 1)  # stopped inside epoch 1
    assert "resume.safetensors" not in set(store.artifacts(rid)["name"])
    res = run_job(JobConfig.from_dict(store.get_run(rid)["config"]), store=store, run_id=rid, resume=True)
    assert res.state == "completed"
    assert res.notices == [
        f"Run {rid} restarts from step 0: it had saved no resume state (it stopped before its first one)."
    ]


def test_altered_teacher_cache_values_are_not_used(data_dir):
    store = RunStore()
    cfg = JobConfig(**{**TINY, "teacher_cache": True})
    first = run_job(cfg, store=store)
    cache = next((data_dir / "cache").glob("teacher-*.safetensors"))
    tensors = load_file(str(cache))
    save_file(
        {k: v * 7.0 for k, v in tensors.items()}, str(cache), metadata={"size": "3", "mass_kept": "1.0", "version": "1"}
    )
    second = run_job(cfg, store=store)
    assert second.notices and str(cache) in second.notices[0] and "rebuilt" in second.notices[0]
    a, b = store.metrics(first.run_id), store.metrics(second.run_id)
    torch.testing.assert_close(torch.tensor(a["loss"].to_numpy()), torch.tensor(b["loss"].to_numpy()))
    assert store.metrics(second.run_id, "epoch")["cache_from_disk"].dropna().tolist() == [0.0]


def test_runs_check_finds_a_corrupted_store_that_still_lists(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig(**TINY), state="completed")
    store.log_metrics(rid, [("step", s, 1, "loss", float(s)) for s in range(3000)])
    with store._tx() as con:  # enough runs for the index on their state to span several pages
        con.executemany(
            "INSERT INTO runs (id, created, updated, state, config) SELECT ?, created, updated, state, config "
            "FROM runs WHERE id=?",
            [(f"other-{i:04d}", rid) for i in range(1000)],
        )
    store.close()
    db = data_dir / "runs.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    leaf = con.execute("SELECT pageno FROM dbstat WHERE name='runs_state' AND pagetype='leaf'").fetchall()[1][0]
    con.close()
    data = bytearray(db.read_bytes())
    start = (leaf - 1) * page  # one page of the index on the runs' state: keys changed in place
    data[start : start + page] = bytes(data[start : start + page]).replace(b"completed", b"completez")
    db.write_bytes(bytes(data))
    assert cli("runs", "list", home=data_dir).returncode == 0  # still lists
    p = cli("runs", "check", home=data_dir)
    assert p.returncode == 1 and "database:" in p.stdout and "database: ok" not in p.stdout
    p = cli("runs", "check", "--repair", home=data_dir)
    assert "moved the damaged database" in p.stdout and "Traceback" not in p.stderr
    assert cli("runs", "check", home=data_dir).returncode == 0
    assert RunStore().get_run(rid)["state"] == "completed" and len(RunStore().list_runs()) == 1001
    assert RunStore().metrics(rid)["loss"].tolist() == [float(s) for s in range(3000)]  # rows kept


def test_a_deleted_store_does_not_hide_its_run_folders_and_repair_reindexes_them(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**TINY), store=store)
    store.close()
    for f in data_dir.glob("runs.sqlite*"):
        f.unlink()
    assert "1 run folder(s)" in cli("runs", "list", home=data_dir).stdout  # not "no runs yet"
    p = cli("runs", "check", home=data_dir)
    assert p.returncode == 1 and f"orphaned run folder (not in the database): {res.run_id}" in p.stdout
    assert "--repair" in p.stdout
    p = cli("runs", "check", "--repair", "--json", home=data_dir)
    out = json.loads(p.stdout)
    assert out["ok"] and out["orphans"] == [] and f"re-indexed run {res.run_id} as completed" in out["repaired"][0]
    again = RunStore()
    run = again.get_run(res.run_id)
    assert run["state"] == "completed" and run["config"]["pair"] == TINY["pair"]
    assert again.load_student(res.run_id)


def _snapshot(store: RunStore, run_ids: list[str]) -> dict:
    out = {}
    for rid in run_ids:
        run = store.get_run(rid)
        arts = store.artifacts(rid)
        out[rid] = (
            run["state"],
            run["step"],
            json.dumps(run["summary"], sort_keys=True),
            store.metrics(rid, "step").to_json(),
            sorted(zip(arts["name"], arts["sha256"])),
        )
    return out


def _row_count(home) -> int:
    return len(RunStore(home).list_runs()) if (home / "runs.sqlite").exists() else 0


@pytest.mark.slow
def test_sigkill_at_random_points_of_20_runs_leaves_a_checkable_store(tmp_path):
    """Each run is killed at a seeded random time (or finishes first); earlier runs never change. Every fifth
    kill lands at a random time after the start (often before the run's row exists); the others at a random time
    after the row appears, so that a loaded machine's slow start-up does not decide where the kills land."""
    home = tmp_path / "kdwb"
    rng = random.Random(15)
    done: list[str] = []
    for i in range(20):
        before = _snapshot(RunStore(home), done)
        proc = start(
            "distill",
            "--pair",
            TINY["pair"],
            "--epochs",
            "6",
            "--batch-size",
            "16",
            "--val-size",
            "32",
            "--seed",
            str(i),
            home=home,
        )
        if i % 5:
            rows_before = len(done)
            wait_until(
                lambda p=proc, n=rows_before: _row_count(home) > n or p.poll() is not None,
                timeout=120,
                what="the run's row or the end of the process",
            )
        time.sleep(rng.uniform(0.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        store = RunStore(home)
        report = check_store(home)
        assert report.ok, report.to_dict()
        assert _snapshot(store, done) == before
        runs = store.list_runs()
        assert set(runs["state"]) <= {"completed", "interrupted"}
        done = list(runs["id"])
    assert len(done) >= 16  # every run killed after its row was written kept it
    assert "interrupted" in set(runs["state"])  # some kills landed mid-run


def test_a_deleted_run_leaves_no_orphaned_folder(data_dir):
    store = RunStore()
    res = run_job(JobConfig(**TINY), store=store)
    assert store.run_dir(res.run_id).is_dir()
    store.delete_run(res.run_id)
    assert not store.run_dir(res.run_id).exists() and check_store(data_dir).ok
