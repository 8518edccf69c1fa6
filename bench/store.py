"""Benchmark of the run store (issue 15), printed as ratios against baselines run here.

1. Step-metric write throughput of the runner's path (MetricLog batches into RunStore.log_metrics:
   INSERT OR REPLACE under the unique (run, level, step, name) index, with the run's lease held and
   every artifact written with its sha256) against the path before issue 15 (plain INSERTs under the
   old non-unique index, no lease, artifacts without checksums), same rows, batches and artifacts
   (goal: ratio >= 0.9).
2. `runs list` latency with 10,000 runs in the store: RunStore.list_runs() plus the table the CLI
   prints (goal: < 0.5 s), and the whole `python -m kdcore runs list` for reference.

    python bench/store.py [--steps 20000] [--metrics 8] [--repeats 5] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kdcore.cli import _table_text
from kdcore.jobs import JobConfig
from kdcore.jobs.reporting import MetricLog
from kdcore.jobs.store import RunStore, atomic_write_bytes

_FLUSH_EVERY = 25  # steps per metric batch (the runner flushes about once a second)
_ARTIFACT_EVERY = 500  # steps per artifact (the runner writes weights and resume state at epoch ends)
_BLOB = os.urandom(256 * 1024)
_OLD_METRICS = """CREATE TABLE IF NOT EXISTS metrics (run_id TEXT NOT NULL, level TEXT NOT NULL,
    step INTEGER NOT NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, level, step);
CREATE TABLE IF NOT EXISTS artifacts (run_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    path TEXT NOT NULL, created REAL NOT NULL, epoch INTEGER, PRIMARY KEY (run_id, name));"""


def _values(step: int, n: int) -> dict[str, float]:
    return {f"m{k}": step * 0.001 + k for k in range(n)}


def _write_steps(store: Any, rid: str, steps: int, n: int) -> float:
    """Seconds to write `steps` steps of n metrics each to run `rid` of `store` (a RunStore or _StoreBefore)
    through MetricLog, flushed every _FLUSH_EVERY steps, with an artifact every _ARTIFACT_EVERY steps."""
    log = MetricLog(store, rid)
    t0 = time.perf_counter()
    for s in range(1, steps + 1):
        log.add("step", s, 1, _values(s, n))
        if s % _FLUSH_EVERY == 0:
            log.flush()
        if s % _ARTIFACT_EVERY == 0:
            store.save_artifact(rid, f"w{s}.safetensors", _BLOB, kind="student", epoch=s)
    log.flush()
    return time.perf_counter() - t0


def write_new(root: Path, steps: int, n: int) -> float:
    """Rows/s through today's path: lease held, MetricLog -> log_metrics, artifacts with sha256."""
    store = RunStore(root)
    rid = store.create_run(JobConfig(), state="running", seed=0)
    lease = store.acquire_lease(rid)
    dt = _write_steps(store, rid, steps, n)
    lease.release()
    store.close()
    return steps * n / dt


class _StoreBefore:
    """The run store's write path before issue 15: plain INSERTs under the non-unique index, artifacts
    without checksums, no lease (MetricLog calls its log_metrics as it calls RunStore's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(root / "runs.sqlite", isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(_OLD_METRICS)

    def log_metrics(self, run_id: str, rows: list[tuple]) -> None:
        values = [(run_id, lv, int(s), int(e), n, None if v is None else float(v)) for lv, s, e, n, v in rows]
        if values:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany(
                "INSERT INTO metrics (run_id, level, step, epoch, name, value) VALUES (?,?,?,?,?,?)", values
            )
            self.con.execute("COMMIT")

    def save_artifact(self, run_id: str, name: str, data: bytes, *, kind: str, epoch: int) -> None:
        path = self.root / "runs" / run_id / name
        atomic_write_bytes(path, data)
        self.con.execute("BEGIN IMMEDIATE")
        self.con.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?)", (run_id, name, kind, str(path), time.time(), epoch)
        )
        self.con.execute("COMMIT")


def write_old(root: Path, steps: int, n: int) -> float:
    """Rows/s through the path before issue 15, same rows, batches and artifacts."""
    store = _StoreBefore(root)
    dt = _write_steps(store, "r", steps, n)
    store.con.close()
    return steps * n / dt


def fill_runs(root: Path, n: int) -> RunStore:
    """A store holding n completed runs (rows as the runner leaves them)."""
    store = RunStore(root)
    cfg = json.dumps(JobConfig().to_dict(), sort_keys=True)
    now = time.time()
    rows = [
        (
            f"run-{i:06d}",
            now - i,
            now - i,
            "completed",
            f"run {i}",
            "digits",
            "kd",
            cfg,
            i,
            "cpu",
            "{}",
            json.dumps({"steps": 100, "final_val_acc": 0.9}),
        )
        for i in range(n)
    ]
    with store._tx() as con:
        con.executemany(
            "INSERT INTO runs (id, created, updated, state, name, pair, objective, config, seed, device, "
            "versions, summary) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return store


def list_latency(store: RunStore) -> float:
    t0 = time.perf_counter()
    df = store.list_runs()
    text = _table_text(df.drop(columns=["error"]))
    dt = time.perf_counter() - t0
    assert len(df) and text
    return dt


def cli_latency(root: Path) -> float:
    env = dict(os.environ, KDWB_HOME=str(root))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdcore", "runs", "list"], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--metrics", type=int, default=8, help="metric names per step")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        new, old = [], []
        for i in range(args.repeats):  # in pairs, alternating which goes first (load and caches hit both)
            for which in ("old", "new") if i % 2 == 0 else ("new", "old"):
                write = write_old if which == "old" else write_new
                (old if which == "old" else new).append(write(Path(tmp) / f"{which}{i}", args.steps, args.metrics))
        ratio = statistics.median(n / o for n, o in zip(new, old))
        print(
            f"step-metric writes: {statistics.median(new):,.0f} rows/s with lease + unique (run, level, step, name) key + sha256 "
            f"artifacts, {statistics.median(old):,.0f} rows/s before (plain inserts); ratio {ratio:.3f} "
            f"(median of {args.repeats} paired runs; goal >= 0.9)"
        )
        store = fill_runs(Path(tmp) / "list", args.runs)
        lat = statistics.median(list_latency(store) for _ in range(args.repeats))
        print(f"runs list with {args.runs:,} runs: {lat * 1000:.0f} ms in process (list_runs + table; goal < 500 ms)")
        print(
            f"`python -m kdcore runs list` with {args.runs:,} runs: {cli_latency(Path(tmp) / 'list'):.2f} s "
            f"wall, interpreter start and imports included"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
