"""One owner per run: an exclusive lease on a run, held by the process that trains it.

The lease is an OS file lock (``fcntl.flock``) on ``runs/<run_id>/.lease``, taken without waiting
and held for the job's whole life. The kernel drops it when the process ends, however it ends
(SIGKILL included), so a run whose lease is free has nobody training it: that, not a missed
heartbeat, is what makes a 'running' run 'interrupted'. The file holds who took the lease
(host, pid, since) so that a refused second owner can be told who has the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LEASE_NAME = ".lease"
_TRIES = 5


class RunBusyError(RuntimeError):
    """The run is being trained by another process (it holds the run's lease)."""

    def __init__(self, run_id: str, holder: dict) -> None:
        self.run_id, self.holder = run_id, holder
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
        super().__init__(
            f"Run {run_id} is being trained by another process (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}, since {when}); only one process may train a run. Wait for it "
            f"to end, or cancel it with `python -m kdcore runs cancel {run_id}`."
        )


@dataclass
class Lease:
    """A held lease; `release()` (or the process ending) frees it."""

    run_id: str
    path: Path
    handle: IO[str] | None

    def release(self) -> None:
        if self.handle is not None:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_UN)
            finally:
                self.handle.close()
                self.handle = None

    @property
    def held(self) -> bool:
        return self.handle is not None


def lease_path(run_dir: Path) -> Path:
    return run_dir / LEASE_NAME


def acquire(run_id: str, run_dir: Path) -> Lease:
    """Take the run's lease now, or raise RunBusyError naming who holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lease_path(run_dir)
    fh = open(path, "a+")
    if not _lock_now(fh):
        fh.close()
        raise RunBusyError(run_id, _read_holder(path))
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
    fh.flush()
    return Lease(run_id, path, fh)


def _lock_now(fh: IO[str]) -> bool:
    """Take the exclusive lock without blocking (a few tries over 0.2 s: another process may be only
    peeking at it with a shared lock)."""
    for _ in range(_TRIES):
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.04)
    return False


def holder(run_dir: Path) -> dict | None:
    """Who holds the run's lease ({host, pid, since}), or None when nobody does."""
    path = lease_path(run_dir)
    if not path.is_file():
        return None
    try:
        fh = open(path)
    except OSError:
        return None
    try:
        fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path)
    finally:
        fh.close()  # closing drops a shared lock we took
    return None


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
