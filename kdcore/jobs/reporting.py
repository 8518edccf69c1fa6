"""How a running job reports: metric rows buffered into the run store, events to the caller's
callback, cancel checks, heartbeats, and the run's final state."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from kdcore.jobs.store import RunStore, StoreError

Callback = Callable[[dict], Any]
Cancel = Callable[[], bool] | threading.Event
FLUSH_EVERY_S = 1.0  # metric rows are written at least this often (and at each epoch end)
CANCEL_POLL_S = 0.25  # how often the store's cancel flag is read
HEARTBEAT_S = 2.0  # how often a running run says it is alive


class JobCancelled(Exception):
    """Raised inside the loop when the caller asked the job to stop."""


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in the worker) stopped a job; `.run_id` is the run to resume (None without a store)."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        super().__init__(
            f"interrupted, resume with `python -m kdcore runs resume {run_id}`" if run_id else "interrupted"
        )


class MetricLog:
    """Buffers metric rows and writes them to the store in batches (one transaction each)."""

    def __init__(self, store: RunStore | None, run_id: str | None) -> None:
        self.store, self.run_id = store, run_id
        self.rows: list[tuple] = []
        self.last_flush = time.monotonic()

    def add(self, level: str, step: int, epoch: int, values: dict[str, float]) -> None:
        self.rows.extend((level, step, epoch, k, v) for k, v in values.items())

    def maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.run_id is not None and self.rows:
            self.store.log_metrics(self.run_id, self.rows)
        self.rows = []
        self.last_flush = time.monotonic()


class Reporter:
    """The job's link to its caller and its run: callback, cancel flag, heartbeat, metrics, states.

    store/run_id: the run's row (both None when the job runs without a store)
    callback:     called with one dict per event ({"event", "run_id", "step", "epoch", "total_steps", ...})
    cancel:       a threading.Event or a callable; set/true stops the job at its next step
    """

    def __init__(
        self,
        store: RunStore | None,
        run_id: str | None,
        callback: Callback | None,
        cancel: Cancel | None,
        *,
        total_steps: int,
        epochs: int,
    ):
        self.store, self.run_id = store, run_id
        self.callback, self.cancel = callback, cancel
        self.total_steps, self.epochs = total_steps, epochs
        self.log = MetricLog(store, run_id)
        self._last_cancel_poll = 0.0
        self._last_heartbeat = time.monotonic()

    def emit(self, event: str, step: int, epoch: int, **data: Any) -> None:
        if self.callback is not None:
            self.callback(
                {
                    "event": event,
                    "run_id": self.run_id,
                    "step": step,
                    "epoch": epoch,
                    "total_steps": self.total_steps,
                    "epochs": self.epochs,
                    **data,
                }
            )

    def check_cancel(self) -> None:
        """Raise JobCancelled when the caller or the store (polled every CANCEL_POLL_S) asks to stop."""
        c = self.cancel
        if c is not None and (c.is_set() if isinstance(c, threading.Event) else bool(c())):
            raise JobCancelled()
        now = time.monotonic()
        if self.store is not None and self.run_id is not None and now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            if self.store.cancel_requested(self.run_id):
                raise JobCancelled()

    def beat(self, step: int, epoch: int, *, now: bool = False) -> None:
        """A heartbeat with the progress (at most every HEARTBEAT_S unless `now`)."""
        t = time.monotonic()
        if self.store is not None and self.run_id is not None and (now or t - self._last_heartbeat >= HEARTBEAT_S):
            self._last_heartbeat = t
            self.store.heartbeat(self.run_id, step=step, epoch=epoch)

    def finish(self, state: str, error: str | None, summary: dict, step: int, epoch: int) -> None:
        """Flush the metrics and record the run's final state, summary and progress; emit "end"."""
        if self.store is not None and self.run_id is not None:
            try:
                self.log.flush()
            finally:
                self.store.update_run(
                    self.run_id,
                    state=state,
                    error=error,
                    summary=summary,
                    step=step,
                    epoch=epoch,
                    heartbeat=time.time(),
                )
        self.emit("end", step, epoch, state=state, error=error, metrics=summary)

    def mark_crash(self, exc: BaseException, step: int, epoch: int) -> None:
        """Record why the job stopped on an exception it does not handle (best effort; never raises)."""
        if isinstance(exc, StoreError):
            state, error = "failed", "The run store could not be written; see the error shown by the caller."
        elif isinstance(exc, KeyboardInterrupt):
            state, error = (
                "interrupted",
                (
                    f"Interrupted at step {step} (epoch {epoch}). Resume it with "
                    f"`python -m kdcore runs resume {self.run_id}`."
                ),
            )
        else:
            state, error = "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        if self.store is None or self.run_id is None:
            return
        try:
            self.log.flush()
        except Exception:
            pass
        try:
            self.store.update_run(self.run_id, state=state, error=error, step=step, epoch=epoch)
        except Exception:
            pass
