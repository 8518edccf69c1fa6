"""What every executor shares (executors.py: the local pool and `make_executor`; ray_executor.py: Ray):
the `Executor` interface (submit, wait, cancel, resume), its errors, the worker count's bounds, the
queued rows a batch starts from, and `run_batch`, the body that trains a batch in a worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kdcore.jobs.config import JobConfig, with_source_label
from kdcore.jobs.store import FINAL_STATES, RunStore

Progress = Callable[[dict], object]


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


def run_batch(store: RunStore, run_ids: Sequence[str], threads: int = 1) -> int:
    """The pool process's body: run every run of the batch that no other process has claimed yet."""
    import torch

    from kdcore.jobs.worker import run_queued

    torch.set_num_threads(threads)
    for rid in run_ids:
        if store.get_run(rid)["state"] == "queued":
            run_queued(rid, store)  # claims atomically: a run another process took is skipped
    return 0
