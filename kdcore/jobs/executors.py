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
on a Ray cluster of several machines see README "Scaling out". The interface and the worker's
body are in executor_base.py, which ray_executor.py builds on too. A worker that dies leaves its run
'running' with a free lease; the store reports it 'interrupted' and `resume` queues it again from
its last epoch, on this executor or any other. A chain (takd, dgkd, ban) is one run: its stages
train one after another inside the worker that took it.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from kdcore.jobs.config import JobConfig
from kdcore.jobs.executor_base import (
    Executor,
    ExecutorError,
    Progress,
    check_workers,
    max_workers,
    queue_runs,
    run_batch,
)
from kdcore.jobs.ray_executor import RayExecutor
from kdcore.jobs.store import RunStore

EXECUTORS = ("local", "ray")
__all__ = [  # the executors' names, those of executor_base.py among them
    "EXECUTORS",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "Progress",
    "check_workers",
    "make_executor",
    "max_workers",
    "queue_runs",
    "run_batch",
    "run_plan",
    "start_pool_worker",
]


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
