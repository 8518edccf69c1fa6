"""Background execution: jobs run in a separate worker process; callers poll the run store.

    run_id = submit(JobConfig(pair="digits", objective="kd"))   # queued; a worker starts if none runs
    get_status(run_id)["state"]                                  # queued -> running -> completed
    cancel(run_id)                                               # stops at the next step

Several jobs can queue; one worker per data directory runs them in order (an exclusive lock file
keeps it to one). The worker exits when the queue is empty, and `submit` starts a new one. With
KDWB_WORKERS=N (the workshop server sets it) up to N workers drain the queue side by side, each
holding one of the lock slots worker.lock, worker-1.lock, ... worker-{N-1}.lock; each run is still
claimed by one of them (RunStore.claim) and trained under its lease.
A run is trained by one process at a time: the runner holds the run's lease (kdcore/jobs/lease.py)
for the job's life. A worker killed mid-run leaves its run 'running' with a free lease: the store
reports it as 'interrupted' the next time it looks, and `resume(run_id)` queues it again from its
last epoch; a run whose lease is held (even by a paused process) is refused, naming the holder.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

import pandas as pd

from kdcore.jobs.config import JobConfig, with_source_label
from kdcore.jobs.lease import RunBusyError
from kdcore.jobs.store import FINAL_STATES, RunStore, StoreError

_LOCK_NAME = "worker.lock"
WORKERS_ENV = "KDWB_WORKERS"  # how many workers may drain the queue at once (default 1)


def _store(store: RunStore | None) -> RunStore:
    return store if store is not None else RunStore()


def submit(config: JobConfig, *, store: RunStore | None = None, start_worker: bool = True) -> str:
    """Validate and queue a job; start a worker process if none is running. Returns the run id."""
    config = with_source_label(config.validate())  # a user's own pair is listed as "hf:teacher→student"
    store = _store(store)
    run_id = store.create_run(config, state="queued")
    if start_worker:
        start_worker_process(store)
    return run_id


def rerun(run_id: str, *, store: RunStore | None = None, start_worker: bool = True) -> str:
    """Queue a new run with the same config as an earlier one."""
    from kdcore.jobs.chain import check_rerunnable

    store = _store(store)
    cfg = JobConfig.from_dict(check_rerunnable(store.get_run(run_id))["config"]).validate()
    new_id = store.create_run(cfg, state="queued", parent_id=run_id)
    if start_worker:
        start_worker_process(store)
    return new_id


def resume(run_id: str, *, store: RunStore | None = None, start_worker: bool = True) -> str:
    """Queue an interrupted, cancelled or failed run to continue from its last finished epoch."""
    store = _store(store)
    store.reap_stale()
    holder = store.lease_holder(run_id)
    if holder is not None:
        raise RunBusyError(run_id, holder)
    if not store.queue_for_resume(run_id):
        state = store.get_run(run_id)["state"]
        raise ValueError(f"Run {run_id} is {state}: only interrupted, cancelled or failed runs can be resumed.")
    if start_worker:
        start_worker_process(store)
    return run_id


def cancel(run_id: str, *, store: RunStore | None = None) -> None:
    """Ask a queued or running job to stop (a running one stops at its next step)."""
    _store(store).request_cancel(run_id)


def get_status(run_id: str, *, store: RunStore | None = None) -> dict:
    """The run's row (state, step, epoch, error, summary, ...), after reaping dead workers."""
    store = _store(store)
    store.reap_stale()
    return store.get_run(run_id)


def wait(run_id: str, *, store: RunStore | None = None, timeout: float = 600.0, poll: float = 0.2) -> dict:
    """Poll until the run reaches a final state; TimeoutError after `timeout` seconds."""
    store = _store(store)
    deadline = time.monotonic() + timeout
    while True:
        run = get_status(run_id, store=store)
        if run["state"] in FINAL_STATES:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run {run_id} is still {run['state']} after {timeout:.0f} s.")
        time.sleep(poll)


def compare(run_ids: list[str], *, store: RunStore | None = None) -> pd.DataFrame:
    """One row per run: its config's main fields, state and final/best validation metrics."""
    store = _store(store)
    rows = []
    for rid in run_ids:
        r = store.get_run(rid)
        c, s = r["config"], r["summary"] or {}
        rows.append(
            {
                "id": rid,
                "state": r["state"],
                "pair": c.get("pair"),
                "objective": c.get("objective"),
                "temperature": c.get("temperature"),
                "lam": c.get("lam"),
                "seed": c.get("seed"),
                "epochs": c.get("epochs"),
                "steps": s.get("steps"),
                "final_val_acc": s.get("final_val_acc"),
                "best_val_acc": s.get("best_val_acc"),
                "final_val_loss": s.get("final_val_loss"),
                "best_epoch": s.get("best_epoch"),
            }
        )
    return pd.DataFrame(rows)


def _worker_env() -> dict:
    """The worker's environment: this process's, unchanged. kdcore comes from the installed project
    (`pip install -e .`) or from the PYTHONPATH the caller set; a user's `module:factory` pair from
    the current folder, which `python -m` puts first on sys.path (the worker starts in this cwd)."""
    return dict(os.environ)


def start_worker_process(store: RunStore | None = None) -> subprocess.Popen:
    """Start `python -m kdcore.jobs.worker --home DIR` in its own session (it exits at once if
    another worker holds the lock; that one picks up the queue). With $KDWB_WORKERS = N above 1,
    one worker per queued run is started, up to N (those finding every slot taken exit at once);
    the first is returned."""
    store = _store(store)
    more = min(worker_slots(), store.queued_count()) - 1
    first = _spawn_worker(store)
    for _ in range(max(0, more)):
        _spawn_worker(store)
    return first


def _spawn_worker(store: RunStore) -> subprocess.Popen:
    return spawn_detached(store, ["-m", "kdcore.jobs.worker", "--home", str(store.root)])


def spawn_detached(store: RunStore, args: list[str]) -> subprocess.Popen:
    """Start `python ARGS` in its own session (it outlives a closed terminal), in this folder with
    _worker_env(), its output appended to the store's worker.log (the queue worker, executors' pool)."""
    log = open(store.root / "worker.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_worker_env(),
            start_new_session=True,
            cwd=os.getcwd(),
        )
    finally:
        log.close()


def worker_slots(value: str | None = None) -> int:
    """How many workers may drain the queue at once: `value`, else $KDWB_WORKERS, else 1."""
    text = os.environ.get(WORKERS_ENV, "1") if value is None else value
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(
            f"{WORKERS_ENV} is the number of background workers, a positive integer. Got {text!r}. "
            f"Set it to 1 or more, or unset it (one worker)."
        )
    return n


def lock_name(slot: int) -> str:
    """The lock file of a worker slot: worker.lock for slot 0 (the single worker), worker-<slot>.lock after."""
    return _LOCK_NAME if slot == 0 else f"worker-{slot}.lock"


def _try_lock(root: Path, slots: int = 1) -> IO[str] | None:
    """Hold the first free worker slot of `slots`, or None when every slot has its worker."""
    for slot in range(slots):
        fh = open(root / lock_name(slot), "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return fh
    return None


def _unlock(fh: IO[str]) -> None:
    fcntl.flock(fh, fcntl.LOCK_UN)
    fh.close()


def run_queued(run_id: str, store: RunStore) -> None:
    """Run one queued run in this process (the worker's body)."""
    from kdcore.jobs.chain import is_chain, run_chain
    from kdcore.jobs.runner import run_job

    if not store.claim(run_id, os.getpid()):
        return
    row = store.get_run(run_id)
    try:
        config = JobConfig.from_dict(row["config"])
        if is_chain(config.objective):  # takd, dgkd, ban: the run is the chain, its stages child runs
            run_chain(config, store=store, run_id=run_id)
        else:
            run_job(config, store=store, run_id=run_id, resume=bool(row.get("resume")))
    except RunBusyError:
        return  # another process trains it: it keeps the run
    except StoreError:
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # invalid config, misfit objective, crash: the run says why
        run = store.get_run(run_id)
        if run["state"] == "running":
            store.update_run(run_id, state="failed", error=f"{type(exc).__name__}: {exc}")


def work(store: RunStore, slots: int = 1) -> int:
    """Run queued jobs one after another until the queue is empty; 0 when done. Up to `slots`
    workers do this side by side (each takes the next queued run another has not claimed)."""
    while True:
        lock = _try_lock(store.root, slots)
        if lock is None:
            return 0  # every slot has a worker: they own the queue
        try:
            while (run_id := store.next_queued()) is not None:
                run_queued(run_id, store)
        finally:
            _unlock(lock)
        if store.next_queued() is None:  # a job queued while we were releasing the lock?
            return 0


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdcore.jobs.worker", description="Run queued distillation jobs.")
    ap.add_argument("--home", help="data directory (default: $KDWB_HOME or ~/.kdwb)")
    ap.add_argument("--workers", help=f"how many workers may run at once (default: ${WORKERS_ENV} or 1)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return work(RunStore(args.home), worker_slots(args.workers))


if __name__ == "__main__":
    sys.exit(main())
