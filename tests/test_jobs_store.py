"""RunStore: runs, metrics as DataFrames, artifacts, stale workers, and clear errors on bad disks."""

import errno
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdcore.jobs.config import JobConfig
from kdcore.jobs.store import STATES, RunStore, StoreError


def test_store_defaults_to_kdwb_home_and_records_runs(data_dir):
    store = RunStore()
    assert store.root == data_dir and (data_dir / "runs.sqlite").is_file()
    rid = store.create_run(JobConfig(seed=3), versions={"torch": "x"}, data_fingerprint="abc")
    run = store.get_run(rid)
    assert run["state"] == "queued" and run["config"]["seed"] == 3 and run["seed"] == 3
    assert run["versions"] == {"torch": "x"} and run["data_fingerprint"] == "abc"
    for state in STATES:
        store.set_state(rid, state)
        assert store.get_run(rid)["state"] == state
    with pytest.raises(ValueError, match="state"):
        store.set_state(rid, "done")
    with pytest.raises(StoreError, match="no run with id"):
        store.get_run("nope")
    assert list(store.list_runs()["id"]) == [rid]
    con = sqlite3.connect(data_dir / "runs.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_metrics_come_back_wide_per_level(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig())
    rows = [("step", s, 1, n, float(s * 10 + i)) for s in (1, 2, 3) for i, n in enumerate(["loss", "kl"])]
    store.log_metrics(rid, rows)
    store.log_metrics(rid, [("epoch", 3, 1, "val_acc", 0.5)])
    df = store.metrics(rid, "step")
    assert list(df.columns) == ["step", "epoch", "loss", "kl"]
    np.testing.assert_array_equal(df["loss"], [10, 20, 30])
    np.testing.assert_array_equal(df["kl"], [11, 21, 31])
    assert store.metrics(rid, "epoch")["val_acc"].tolist() == [0.5]
    store.truncate_metrics(rid, after_step=1)
    assert store.metrics(rid)["step"].tolist() == [1]
    with pytest.raises(ValueError, match="level"):
        store.metrics(rid, "batch")


def test_student_weights_round_trip_as_safetensors(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig())
    sd = {"w": torch.randn(3, 4), "b": torch.arange(3.0)}
    store.save_student(rid, sd, epoch=2)
    store.save_student(rid, {k: v + 1 for k, v in sd.items()}, epoch=3, final=True)
    assert store.checkpoints(rid) == [2]  # the final weights are apart
    torch.testing.assert_close(store.load_student(rid, epoch=2)["w"], sd["w"])
    torch.testing.assert_close(store.load_student(rid)["b"], sd["b"] + 1)
    assert store.artifact_path(rid, "student.safetensors").read_bytes()[:8] != b"\x80\x02"  # not a pickle
    assert not [p for p in store.run_dir(rid).iterdir() if p.name.endswith(".tmp")]


def test_a_running_run_whose_process_died_is_interrupted_on_reopen(data_dir):
    store = RunStore()
    done = store.create_run(JobConfig(), state="completed")
    rid = store.create_run(JobConfig(), state="queued")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert store.claim(rid, proc.pid) and store.get_run(rid)["state"] == "running"
    assert not store.claim(rid, proc.pid)  # claimed once only
    alive = store.create_run(JobConfig(), state="queued")
    store.claim(alive, os.getpid())
    reopened = RunStore()
    assert reopened.get_run(rid)["state"] == "interrupted" and "resume" in reopened.get_run(rid)["error"]
    assert reopened.get_run(done)["state"] == "completed"
    assert reopened.get_run(alive)["state"] == "running"


def test_cancel_of_a_queued_run_is_immediate(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig())
    store.request_cancel(rid)
    assert store.get_run(rid)["state"] == "cancelled" and store.cancel_requested(rid)


def test_unwritable_data_directory_gives_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KDWB_HOME", str(blocker / "kdwb"))
    with pytest.raises(StoreError, match="KDWB_HOME"):
        RunStore()
    import kdcore.jobs.store as st

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(st.tempfile, "mkstemp", read_only)
    with pytest.raises(StoreError, match="read-only"):
        RunStore(tmp_path / "ro")


def test_a_full_disk_loses_no_earlier_run(data_dir, monkeypatch):
    store = RunStore()
    old = store.create_run(JobConfig(seed=1), state="completed")
    store.log_metrics(old, [("epoch", 1, 1, "val_acc", 0.9)])
    store.save_student(old, {"w": torch.ones(2)}, final=True)
    import kdcore.jobs.store as st

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st, "atomic_write_bytes", full)
    new = store.create_run(JobConfig(seed=2))
    with pytest.raises(StoreError, match="full"):
        store.save_student(new, {"w": torch.zeros(2)}, final=True)
    assert store.get_run(old)["state"] == "completed"
    assert store.metrics(old, "epoch")["val_acc"].tolist() == [0.9]
    torch.testing.assert_close(store.load_student(old)["w"], torch.ones(2))


_OLD_RUNS_TABLE = """CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL,
    state TEXT NOT NULL, name TEXT, pair TEXT, objective TEXT, config TEXT NOT NULL, seed INTEGER, device TEXT,
    versions TEXT, data_fingerprint TEXT, error TEXT, pid INTEGER, host TEXT, heartbeat REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0, parent_id TEXT, step INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0, resume INTEGER NOT NULL DEFAULT 0, summary TEXT)"""


def test_a_store_from_an_earlier_version_opens_and_gains_the_new_fields(data_dir):
    """No total_steps column and no protocol tables: the runs open, the fields default, writes work."""
    import json

    data_dir.mkdir(parents=True)
    con = sqlite3.connect(data_dir / "runs.sqlite")
    con.execute(_OLD_RUNS_TABLE)
    con.execute(
        "INSERT INTO runs (id, created, updated, state, pair, objective, config, step, epoch) "
        "VALUES ('old', 1.0, 1.0, 'completed', 'digits', 'kd', ?, 40, 2)",
        (json.dumps({"epochs": 2}),),
    )
    con.commit()
    con.close()
    (data_dir / "protocols").mkdir()  # an earlier app kept protocols as JSON files
    (data_dir / "protocols" / "p1.json").write_text(
        json.dumps(
            {
                "id": "p1",
                "created": 5.0,
                "pair": "digits",
                "objective": "kd",
                "temperatures": [4.0],
                "lams": [],
                "seeds": [0],
                "runs": [{"variant": "kd T=4", "seed": 0, "run_id": "old"}],
            }
        )
    )
    (data_dir / "protocols" / "broken.json").write_text("{half a file")
    store = RunStore()
    run = store.get_run("old")
    assert run["state"] == "completed" and run["step"] == 40 and run["total_steps"] is None
    store.update_run("old", total_steps=40)
    assert store.get_run("old")["total_steps"] == 40
    protos = store.list_protocols()
    assert [p["id"] for p in protos] == ["p1"] and protos[0]["temperatures"] == [4.0]
    assert protos[0]["runs"] == [{"variant": "kd T=4", "seed": 0, "run_id": "old", "state": "completed"}]
    assert RunStore().list_protocols() == protos  # read in once, not twice


def test_protocol_membership_lives_in_the_store(data_dir):
    store = RunStore()
    a, b, c = (store.create_run(JobConfig(seed=s)) for s in range(3))
    pid = store.create_protocol(
        pair="toy",
        objective="kd",
        plan={"seeds": [0, 1]},
        runs=[{"variant": "base", "seed": 0, "run_id": a}, {"variant": "kd", "seed": 0, "run_id": b}],
    )
    store.add_protocol_run(pid, c, variant="kd", seed=1)
    other = store.create_protocol(pair="toy", objective="dkd", runs=[{"variant": "dkd", "seed": 0, "run_id": a}])
    store.set_state(b, "completed")
    runs = store.protocol_runs(pid)
    assert list(runs.columns) == ["variant", "seed", "run_id", "state"]
    assert runs["run_id"].tolist() == [a, b, c] and runs["state"].tolist() == ["queued", "completed", "queued"]
    got = store.get_protocol(pid)
    assert got["pair"] == "toy" and got["seeds"] == [0, 1] and [r["run_id"] for r in got["runs"]] == [a, b, c]
    assert [p["id"] for p in store.list_protocols()] == [other, pid]  # newest first
    assert sorted(store.protocols_of_run(a)) == sorted([pid, other]) and store.protocols_of_run(c) == [pid]
    store.delete_run(c)
    assert store.protocol_runs(pid)["run_id"].tolist() == [a, b]
    with pytest.raises(StoreError, match="no protocol with id 'nope'"):
        store.get_protocol("nope")
    with pytest.raises(StoreError, match="no protocol"):
        store.add_protocol_run("nope", a, variant="x")
    with pytest.raises(ValueError, match="'run_id' and 'variant'"):
        store.create_protocol(runs=[{"run_id": a}])
    assert len(store.list_protocols()) == 2  # that one was rolled back whole


def test_metric_columns_keep_first_logged_order_across_replays_and_truncation(data_dir):
    store = RunStore()
    rid = store.create_run(JobConfig())
    store.log_metrics(rid, [("step", 1, 1, "zeta", 1.0), ("step", 1, 1, "alpha", 2.0)])
    store.log_metrics(rid, [("step", 2, 1, "mid", 3.0), ("step", 1, 1, "alpha", 4.0), ("step", 1, 1, "zeta", 5.0)])
    df = store.metrics(rid)
    assert list(df.columns) == ["step", "epoch", "zeta", "alpha", "mid"]
    assert df.iloc[0][["zeta", "alpha"]].tolist() == [5.0, 4.0]
    store.truncate_metrics(rid, after_step=1)
    assert list(store.metrics(rid).columns) == ["step", "epoch", "zeta", "alpha"]


_PREVIOUS_METRICS = """CREATE TABLE metrics (run_id TEXT NOT NULL, level TEXT NOT NULL, step INTEGER NOT NULL,
    epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL);
CREATE UNIQUE INDEX metrics_key ON metrics (run_id, level, step, name);"""


def test_a_store_with_a_rowid_metrics_table_migrates_keeping_values_and_name_order(data_dir):
    data_dir.mkdir(parents=True)
    con = sqlite3.connect(data_dir / "runs.sqlite")
    con.executescript(_PREVIOUS_METRICS)
    rows = [("r", "step", s, 1, n, float(10 * s + i)) for s in (1, 2) for i, n in enumerate(["loss", "kl", "acc"])]
    con.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?)", rows)
    con.execute("INSERT OR REPLACE INTO metrics VALUES ('r', 'step', 1, 1, 'loss', 99.0)")  # a replayed row
    con.execute("INSERT INTO metrics VALUES ('r', 'epoch', 1, 1, 'val_acc', 0.5)")
    con.commit()
    seen = con.execute("SELECT name FROM metrics WHERE level='step' ORDER BY rowid").fetchall()
    order = list(dict.fromkeys(n for (n,) in seen))  # the columns the rowid table gave: first row first
    con.close()
    assert order == ["kl", "acc", "loss"]  # the replayed row moved 'loss' last
    before = {"loss": [99.0, 20.0], "kl": [11.0, 21.0], "acc": [12.0, 22.0]}
    store = RunStore()
    df = store.metrics("r")
    assert list(df.columns) == ["step", "epoch", *order]
    assert {k: df[k].tolist() for k in before} == before
    assert store.metrics("r", "epoch")["val_acc"].tolist() == [0.5]
    con = sqlite3.connect(data_dir / "runs.sqlite")
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name='metrics'").fetchone()[0]
    assert "WITHOUT ROWID" in sql
    assert con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='metrics_key'").fetchone()[0] == 0
    con.close()
    store.log_metrics("r", [("step", 2, 1, "kl", 0.25), ("step", 3, 1, "new", 1.0)])
    df = RunStore().metrics("r")  # reopening does not migrate again
    assert list(df.columns) == ["step", "epoch", *order, "new"] and df["kl"].tolist()[1] == 0.25
