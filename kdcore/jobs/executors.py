"""Executors: where a batch of runs trains. Protocols, the leaderboard and chains submit through them.

    ex = make_executor("local", workers=2)           # a pool of 2 worker processes on this machine
    ex = make_executor("ray", ray_address="auto")    # each run a Ray task (kdcore/jobs/ray_executor.py)
    ids = ex.submit([cfg1, cfg2], store=store)       # queued rows in the run store, running at once
    rows = ex.wait(ids, store=store, progress=print) # the runs' rows once each is in a final state
    ex.cancel(ids, store=store)                      # queued runs stop at once, running ones at their next step

Every executor works the same way: `submit` creates each run's row ('queued') in the caller's run
store, and a worker — a local process or a Ray task — runs it there with the worker's body
(`kdcore.jobs.worker.run_queued`: claim the row, take the run's lease, train, write metrics and
artifacts). So the run store must be a folder every worker can open: on one machine it always is;
on a Ray cluster of several machines see README "Scaling out". A worker that dies leaves its run
'running' with a free lease; the store reports it 'interrupted' and `resume` queues it again from
its last epoch, on this executor or any other. A chain (takd, dgkd, ban) is one run: its stages
train one after another inside the worker that took it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kdcore.jobs.config import JobConfig, with_source_label
from kdcore.jobs.store import FINAL_STATES, RunStore

Progress = Callable[[dict], object]
EXECUTORS = ("local", "ray")


class ExecutorError(ValueError):
    """An executor cannot be set up or cannot run what it was given (the message says how to fix it)."""


def max_workers() -> int:
    """The most local workers allowed: the CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(workers: object) -> int:
    """`workers` as a count from 1 to the machine's cores, or a clear error."""
    top = max_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= top:
        raise ExecutorError(
            f"The number of workers must be an integer from 1 to {top} (the CPU cores of this machine). "
            f"Got {workers!r}. Pass --workers between 1 and {top}."
        )
    return workers


def queue_runs(configs: Sequence[JobConfig], store: RunStore) -> list[str]:
    """Validate every config, then create one queued row per config (nothing is created if one is invalid)."""
    checked = [with_source_label(c.validate()) for c in configs]
    return [store.create_run(c, state="queued") for c in checked]


@dataclass
class Executor:
    """The interface: submit configs, wait for their runs, cancel them. Subclasses start the workers."""

    name: str = "executor"
    poll: float = 0.2  # seconds between looks at the store while waiting

    def submit(self, configs: Sequence[JobConfig], *, store: RunStore) -> list[str]:
        """Queue the configs' runs in `store` and start training them; returns their run ids, in order."""
        run_ids = queue_runs(configs, store)
        self.start(run_ids, store)
        return run_ids

    def resume(self, run_ids: Sequence[str], *, store: RunStore) -> list[str]:
        """Queue interrupted, cancelled or failed runs to continue from their last epoch, and run them here."""
        from kdcore.jobs.worker import resume

        ids = [resume(rid, store=store, start_worker=False) for rid in run_ids]
        self.start(ids, store)
        return ids

    def start(self, run_ids: list[str], store: RunStore) -> None:
        raise NotImplementedError

    def cancel(self, run_ids: Sequence[str], *, store: RunStore) -> None:
        """Queued runs are cancelled at once; running ones stop at their next step."""
        for rid in run_ids:
            store.request_cancel(rid)

    def lost(self, store: RunStore) -> dict[str, str]:
        """Runs whose worker ended without ever taking them (run id -> why); none by default."""
        return {}

    def wait(
        self,
        run_ids: Sequence[str],
        *,
        store: RunStore,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> list[dict]:
        """Poll the store until every run is in a final state; returns their rows in order. progress gets
        {"event": "run_done", "run_id", "state", "done", "of"} as each run ends. TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done: dict[str, dict] = {}
        while True:
            store.reap_stale()
            for rid, why in self.lost(store).items():
                _fail_if_unclaimed(store, rid, why)
            for rid in run_ids:
                row = done.get(rid) or store.get_run(rid)
                if rid not in done and row["state"] in FINAL_STATES:
                    done[rid] = row
                    _report(progress, row, len(done), len(run_ids))
            if len(done) == len(run_ids):
                return [done[rid] for rid in run_ids]
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(run_ids) - len(done)} of {len(run_ids)} runs still unfinished after {timeout} s."
                )
            time.sleep(self.poll)

    def run(self, configs: Sequence[JobConfig], *, store: RunStore, progress: Progress | None = None) -> list[dict]:
        """submit, then wait: the finished runs' rows."""
        return self.wait(self.submit(configs, store=store), store=store, progress=progress)

    def close(self) -> None:
        """Release what the executor holds (worker processes end on their own)."""


def _report(progress: Progress | None, row: dict, done: int, of: int) -> None:
    if progress is not None:
        progress({"event": "run_done", "run_id": row["id"], "state": row["state"], "done": done, "of": of})


def _fail_if_unclaimed(store: RunStore, run_id: str, why: str) -> None:
    """A run still queued whose worker is gone will never start: mark it failed with the reason."""
    if store.get_run(run_id)["state"] == "queued":
        store.update_run(run_id, state="failed", error=why)


@dataclass
class LocalExecutor(Executor):
    """A pool of `workers` processes on this machine (`python -m kdcore.jobs.executors`); each takes the
    next unclaimed run of a batch until none is left. threads: torch threads per worker process."""

    name: str = "local"
    workers: int = 1
    threads: int = 1
    _procs: list[tuple[subprocess.Popen, list[str]]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_workers(self.workers)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ExecutorError(f"The torch threads per worker must be an integer ≥ 1. Got {self.threads!r}.")

    def start(self, run_ids: list[str], store: RunStore) -> None:
        n = min(self.workers, len(run_ids))
        for _ in range(n):
            self._procs.append((start_pool_worker(store, run_ids, self.threads), list(run_ids)))

    def lost(self, store: RunStore) -> dict[str, str]:
        """When every process given a batch has exited, a run of it still queued never started."""
        out: dict[str, str] = {}
        batches: dict[tuple[str, ...], list[subprocess.Popen]] = {}
        for proc, batch in self._procs:
            batches.setdefault(tuple(batch), []).append(proc)
        for key, procs in batches.items():
            if all(p.poll() is not None for p in procs):
                why = f"The local worker processes exited without running it (see {store.root / 'worker.log'})."
                out.update(dict.fromkeys(key, why))
        return out

    def close(self) -> None:
        self._procs = [(p, ids) for p, ids in self._procs if p.poll() is None]


def start_pool_worker(store: RunStore, run_ids: list[str], threads: int = 1) -> subprocess.Popen:
    """Start one pool process on a batch (its own session, so it outlives a closed terminal)."""
    from kdcore.jobs.worker import spawn_detached

    args = ["-m", "kdcore.jobs.executors", "--home", str(store.root), "--threads", str(threads)]
    return spawn_detached(store, [*args, *run_ids])


def run_batch(store: RunStore, run_ids: Sequence[str], threads: int = 1) -> int:
    """The pool process's body: run every run of the batch that no other process has claimed yet."""
    import torch

    from kdcore.jobs.worker import run_queued

    torch.set_num_threads(threads)
    for rid in run_ids:
        if store.get_run(rid)["state"] == "queued":
            run_queued(rid, store)  # claims atomically: a run another process took is skipped
    return 0


def run_plan(
    executor: Executor,
    plan: Sequence[tuple[str, JobConfig]],
    *,
    store: RunStore,
    protocol_id: str,
    progress: Progress | None = None,
) -> list[dict]:
    """Run a protocol's (variant, config) plan on `executor`, every run joining the protocol's record;
    one {variant, seed, run_id, state} per run, in plan order. Interrupted (Ctrl-C), it cancels the runs."""
    run_ids = executor.submit([cfg for _, cfg in plan], store=store)
    for (variant, cfg), rid in zip(plan, run_ids, strict=True):
        store.add_protocol_run(protocol_id, rid, variant=variant, seed=cfg.seed)
    try:
        rows = executor.wait(run_ids, store=store, progress=progress)
    except KeyboardInterrupt:  # Ctrl-C stops the protocol's runs too, not only the waiting
        executor.cancel(run_ids, store=store)
        raise
    return [
        {"variant": v, "seed": c.seed, "run_id": r["id"], "state": r["state"]}
        for (v, c), r in zip(plan, rows, strict=True)
    ]


def make_executor(
    kind: str = "local", *, workers: int | None = None, ray_address: str | None = None, threads: int = 1
) -> Executor:
    """The executor named by `kind` ('local' or 'ray'); workers: local processes (default 1) or, for Ray,
    the most runs at once (default: as many as the cluster's CPUs allow); ray_address: 'auto', HOST:PORT
    or None (a local Ray started here)."""
    if kind == "local":
        if ray_address is not None:
            raise ExecutorError("--ray-address goes with --executor ray. Drop it, or add --executor ray.")
        return LocalExecutor(workers=1 if workers is None else workers, threads=threads)
    if kind == "ray":
        from kdcore.jobs.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, max_running=workers, threads=threads)
    raise ExecutorError(f"The executor must be one of {', '.join(EXECUTORS)}. Got {kind!r}.")


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdcore.jobs.executors", description="Run a batch of queued runs.")
    ap.add_argument("--home", required=True, help="the run store's data directory")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    ap.add_argument("run_ids", nargs="+")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run_batch(RunStore(args.home), args.run_ids, args.threads)


if __name__ == "__main__":
    sys.exit(main())
