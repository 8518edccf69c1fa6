"""The run store: SQLite for runs, configs, states and metrics; files for artifacts.

Layout under the data directory (``$KDWB_HOME``, default ``~/.kdwb``)::

    runs.sqlite                 runs (with total_steps), metrics, artifacts, protocols and their
                                member runs (WAL mode; every write one transaction)
    runs/<run_id>/*.safetensors student weights (checkpoints, final), resume state
    runs/<run_id>/run.json      the run's config and identity (`runs check --repair` re-indexes from it)
    runs/<run_id>/.lease        the lock its trainer holds (kdcore/jobs/lease.py: one owner per run)
    cache/                      teacher-output caches (each with a .sha256 beside it)

Every write is atomic: SQLite transactions for rows, write-to-temp + fsync + rename for files. Every
artifact's sha256 is recorded when it is written and checked when it is read (IntegrityError naming
the file). Metric rows are unique per (run, level, step, name): that key is the metrics table itself
(WITHOUT ROWID), and metric_names keeps the order in which each run's metrics were first logged. A
process killed with SIGKILL leaves at most an uncommitted transaction (rolled back on reopen) and a
stray temp file; a 'running' run whose lease is free and whose process is gone is reported as
'interrupted' the next time the store looks. `kdcore/jobs/store_check.py` (`runs check`) verifies all of it.
A run or protocol may belong to a workspace (a workshop participant's): `RunStore(workspace=...)` lists,
opens and creates only that workspace's (kdcore/jobs/workspace.py); `RunStore()` sees them all.
A store made by an earlier version opens as it is: missing run columns are added (NULL in old rows),
its metrics move into the keyed table (the last row of a key kept, name order kept, one transaction),
and protocols an earlier app kept as JSON files under protocols/ are read into the store.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from kdcore.jobs import lease as _lease
from kdcore.jobs import workspace as _ws
from kdcore.jobs.store_errors import IntegrityError, StoreError

STATES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
FINAL_STATES = ("completed", "failed", "cancelled", "interrupted")
LEVELS = ("step", "epoch", "checkpoint")
HEARTBEAT_TIMEOUT_S = 120.0  # a running run whose heartbeat is older is interrupted
# the runs table, column by column; a store made before a column existed gains it on open (NULL or
# the default in old rows), so every earlier run still opens
_RUN_COLUMN_DEFS = (
    ("id", "TEXT PRIMARY KEY"),
    ("created", "REAL NOT NULL"),
    ("updated", "REAL NOT NULL"),
    ("state", "TEXT NOT NULL"),
    ("name", "TEXT"),
    ("pair", "TEXT"),
    ("objective", "TEXT"),
    ("config", "TEXT NOT NULL"),
    ("seed", "INTEGER"),
    ("device", "TEXT"),
    ("versions", "TEXT"),
    ("data_fingerprint", "TEXT"),
    ("error", "TEXT"),
    ("pid", "INTEGER"),
    ("host", "TEXT"),
    ("heartbeat", "REAL"),
    ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("parent_id", "TEXT"),  # the run this one re-runs
    ("chain_id", "TEXT"),  # the chain run (TAKD, DGKD, BAN) this run is a stage of (kdcore/jobs/chain.py)
    ("chain_stage", "INTEGER"),  # its stage in that chain, from 1
    ("step", "INTEGER NOT NULL DEFAULT 0"),
    ("epoch", "INTEGER NOT NULL DEFAULT 0"),
    ("total_steps", "INTEGER"),  # written by the runner when it starts (NULL while queued)
    ("resume", "INTEGER NOT NULL DEFAULT 0"),
    ("summary", "TEXT"),
    ("workspace", "TEXT"),  # the workshop participant whose run it is (kdcore/jobs/workspace.py); NULL: nobody's
)
_RUN_COLUMNS = tuple(name for name, _ in _RUN_COLUMN_DEFS)
# one row per (run, level, step, name), the key itself being the table (WITHOUT ROWID: one b-tree, no
# index beside it); a replayed step replaces its rows. metric_names keeps each run's names in the order
# they were first logged (its rowid), the order of the columns `metrics()` returns.
_METRICS_COLUMNS = (
    "run_id TEXT NOT NULL, level TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, "
    "name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, level, step, name)"
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (\n    "
    + ",\n    ".join(f"{n} {d}" for n, d in _RUN_COLUMN_DEFS)
    + """
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
CREATE TABLE IF NOT EXISTS metric_names (
    run_id TEXT NOT NULL,
    level TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (run_id, level, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    epoch INTEGER,
    sha256 TEXT,
    size INTEGER,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS protocols (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    pair TEXT,
    objective TEXT,
    plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS protocol_runs (
    protocol_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    variant TEXT NOT NULL,
    seed INTEGER,
    PRIMARY KEY (protocol_id, run_id)
);
CREATE INDEX IF NOT EXISTS protocol_runs_run ON protocol_runs (run_id);
"""
    + f"CREATE TABLE IF NOT EXISTS metrics ({_METRICS_COLUMNS}) WITHOUT ROWID;\n"
)
_PROTOCOL_RUN_COLUMNS = ["variant", "seed", "run_id", "state"]
_ARTIFACT_COLUMN_DEFS = (("sha256", "TEXT"), ("size", "INTEGER"))
_PROTOCOL_COLUMN_DEFS = (("workspace", "TEXT"),)
RUN_RECORD = "run.json"  # the run's row as JSON in its folder: `runs check --repair` re-indexes from it
_LIST_COLUMNS = ["id", "state", "name", "pair", "objective", "seed", "device", "created", "step", "epoch", "error"]
_LIST_COLUMNS += ["workspace"]  # a workshop participant's name; None outside a workshop


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _damaged(exc: sqlite3.DatabaseError, db_path: Path) -> StoreError:
    return StoreError(
        f"The run store {db_path} is damaged ({exc}). Run `python -m kdcore runs check --repair` "
        f"to move it aside and re-index the run folders."
    )


def default_home() -> Path:
    """The data directory: $KDWB_HOME, else ~/.kdwb."""
    env = os.environ.get("KDWB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".kdwb"


def _explain_os_error(exc: BaseException, root: Path) -> str:
    msg = str(exc).lower()
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "disk is full" in msg or "no space" in msg:
        return (
            f"The disk holding the data directory {root} is full ({exc}). Free some space or set KDWB_HOME "
            f"to a folder on another disk; earlier runs are unchanged."
        )
    if code in (errno.EACCES, errno.EROFS, errno.EPERM) or "readonly" in msg or "read-only" in msg:
        return (
            f"The data directory {root} is read-only ({exc}). Set KDWB_HOME to a writable folder; "
            f"earlier runs are unchanged."
        )
    if code in (errno.ENOTDIR, errno.EEXIST) or isinstance(exc, NotADirectoryError):
        return f"The data directory {root} is not a folder ({exc}). Set KDWB_HOME to a folder."
    return f"The run store at {root} could not be written: {exc}"


def _pid_alive(pid: int | None) -> bool:
    """True when a process with this id exists and is not a zombie (this host only)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunStore:
    """Runs, their configs, states and metrics in SQLite; artifacts as files beside it.

    `RunStore()` opens (or creates) the store in $KDWB_HOME (default ~/.kdwb); `RunStore(path)`
    in another folder. Safe to use from several processes: every call opens its own connection.
    `workspace`: a workshop participant's view (kdcore/jobs/workspace.py): only their runs and
    protocols, new ones stamped with it, at most `max_active` runs queued or running at once.
    """

    def __init__(self, path: str | Path | None = None, *, workspace: str | None = None, max_active: int | None = None):
        self.root = Path(path).expanduser() if path is not None else default_home()
        self.workspace = None if workspace is None else _ws.check_name(workspace)
        self.max_active = _ws.check_limit(max_active)
        self.db_path = self.root / "runs.sqlite"
        self._local = threading.local()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "runs").mkdir(exist_ok=True)
            self._probe_writable()
            self._connect().executescript(_SCHEMA)  # its own transaction
            self._add_missing_columns()
            self._migrate_metrics()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(_explain_os_error(exc, self.root)) from exc
            raise _damaged(exc, self.db_path) from exc
        except OSError as exc:
            raise StoreError(_explain_os_error(exc, self.root)) from exc
        self._legacy_protocols_read = False
        self.reap_stale()

    def _add_missing_columns(self) -> None:
        """Migrate a store made by an earlier version: add the run columns it lacks."""
        tables = (
            ("runs", _RUN_COLUMN_DEFS),
            ("artifacts", _ARTIFACT_COLUMN_DEFS),
            ("protocols", _PROTOCOL_COLUMN_DEFS),
        )
        for table, defs in tables:
            have = {r["name"] for r in self._read(f"PRAGMA table_info({table})")}
            missing = [(n, d) for n, d in defs if n not in have]
            if missing:
                with self._tx() as con:
                    for name, decl in missing:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def _migrate_metrics(self) -> None:
        """Migrate a store made before metrics were one b-tree keyed (run, level, step, name), in one
        transaction: keep the last row of each key and the order in which names were first logged."""
        if self._metrics_keyed():
            return
        with self._tx() as con:
            if self._metrics_keyed():  # another process migrated it meanwhile
                return
            con.execute(
                "INSERT OR IGNORE INTO metric_names (run_id, level, name) SELECT run_id, level, name FROM metrics "
                "GROUP BY run_id, level, name ORDER BY MIN(rowid)"
            )
            con.execute(f"CREATE TABLE metrics_keyed ({_METRICS_COLUMNS}) WITHOUT ROWID")
            con.execute(  # in rowid order, so the last row of a key replaces the earlier ones
                "INSERT OR REPLACE INTO metrics_keyed (run_id, level, step, epoch, name, value) "
                "SELECT run_id, level, step, epoch, name, value FROM metrics ORDER BY rowid"
            )
            con.execute("DROP TABLE metrics")  # and its indexes (metrics_run, metrics_key)
            con.execute("ALTER TABLE metrics_keyed RENAME TO metrics")

    def _metrics_keyed(self) -> bool:
        sql = self._read("SELECT sql FROM sqlite_master WHERE type='table' AND name='metrics'")[0]["sql"]
        return "WITHOUT ROWID" in sql.upper()

    def _probe_writable(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".probe.")
        os.close(fd)
        os.unlink(tmp)

    # ---- connections -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (one per process and thread, kept open: reopening costs a WAL checkpoint)."""
        key = f"{os.getpid()}:{threading.get_ident()}"
        con = self._local.__dict__.get(key)
        if con is None:
            con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=30000")
            con.row_factory = sqlite3.Row
            self._local.__dict__[key] = con
        return con

    def close(self) -> None:
        """Close this thread's connection (optional: it closes with the process)."""
        con = self._local.__dict__.pop(f"{os.getpid()}:{threading.get_ident()}", None)
        if con is not None:
            con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise StoreError(_explain_os_error(exc, self.root)) from exc
        except sqlite3.DatabaseError as exc:
            raise _damaged(exc, self.db_path) from exc

    def _read(self, sql: str, args: Iterable = (), *, plain: bool = False) -> list[sqlite3.Row]:
        """The rows of a query (sqlite3.Row; plain tuples when `plain`, faster for many rows)."""
        try:
            cur = self._connect().cursor()
            if plain:
                cur.row_factory = None
            return cur.execute(sql, tuple(args)).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(_explain_os_error(exc, self.root)) from exc
        except sqlite3.DatabaseError as exc:
            raise _damaged(exc, self.db_path) from exc

    # ---- runs ------------------------------------------------------------------------------------
    def create_run(
        self,
        config: Any,
        *,
        state: str = "queued",
        seed: int | None = None,
        device: str | None = None,
        versions: dict | None = None,
        data_fingerprint: str | None = None,
        parent_id: str | None = None,
        chain_id: str | None = None,
        chain_stage: int | None = None,
    ) -> str:
        """Insert a run with its full config (a JobConfig or dict); returns its id. parent_id: the run
        it re-runs; chain_id, chain_stage: the chain it is a stage of, and which stage (from 1)."""
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if state not in STATES:
            raise ValueError(
                f"The 'state' argument of RunStore.create_run must be one of {STATES}. Got {state!r} instead."
            )
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        owner = (os.getpid(), socket.gethostname()) if state == "running" else (None, None)
        row = {
            "id": run_id,
            "created": now,
            "updated": now,
            "state": state,
            "name": cfg.get("name", ""),
            "pair": cfg.get("pair"),
            "objective": cfg.get("objective"),
            "config": json.dumps(cfg, sort_keys=True),
            "seed": seed if seed is not None else cfg.get("seed"),
            "device": device or cfg.get("device"),
            "versions": json.dumps(versions or {}),
            "data_fingerprint": data_fingerprint,
            "parent_id": parent_id,
            "chain_id": chain_id,
            "chain_stage": chain_stage,
            "pid": owner[0],
            "host": owner[1],
        }
        self._insert_run(row, chain_id)
        self._write_run_record(run_id, row)
        return run_id

    def _insert_run(self, row: dict, chain_id: str | None) -> None:
        """Insert a run's row, in this store's workspace (a chain stage: its chain's), under its queue limit."""
        with self._tx() as con:
            row["workspace"] = self.workspace or self._chain_workspace(con, chain_id)
            if row["state"] == "queued":
                self._check_room(con, 1)
            con.execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )

    # ---- workspaces (kdcore/jobs/workspace.py) ----------------------------------------------------
    @staticmethod
    def _chain_workspace(con: sqlite3.Connection, chain_id: str | None) -> str | None:
        """A chain's stage runs belong to the chain run's workspace (the worker creates them)."""
        row = con.execute("SELECT workspace FROM runs WHERE id=?", (chain_id,)).fetchone() if chain_id else None
        return row[0] if row else None

    def _active(self, con: sqlite3.Connection | None = None) -> int:
        sql = "SELECT COUNT(*) FROM runs WHERE workspace=? AND state IN ('queued', 'running')"
        if con is not None:
            return int(con.execute(sql, (self.workspace,)).fetchone()[0])
        return int(self._read(sql, (self.workspace,), plain=True)[0][0])

    def _check_room(self, con: sqlite3.Connection | None, adding: int) -> None:
        if self.workspace is not None and self.max_active is not None:
            active = self._active(con)
            if active + adding > self.max_active:
                raise _ws.QueueLimitError(self.workspace, self.max_active, active, adding)

    def check_room(self, adding: int = 1) -> None:
        """QueueLimitError when queueing `adding` more runs would take this workspace over its limit
        (call it before queueing several runs, so that none is queued when they do not all fit)."""
        self.reap_stale()
        self._check_room(None, adding)

    def active_runs(self) -> int:
        """How many runs of this workspace are queued or running (of every workspace without one)."""
        if self.workspace is None:
            return int(self._read("SELECT COUNT(*) FROM runs WHERE state IN ('queued', 'running')", plain=True)[0][0])
        return self._active()

    def _own(self, run_id: str) -> None:
        """WorkspaceError when this store has a workspace and the run is not one of its runs."""
        if self.workspace is None:
            return
        rows = self._read("SELECT workspace FROM runs WHERE id=?", (run_id,))
        if rows and rows[0]["workspace"] != self.workspace:
            raise _ws.foreign("run", run_id, self.workspace)

    def _scope(self) -> tuple[str, tuple]:
        """The WHERE condition (and its argument) that keeps this workspace's rows ('' without one)."""
        return ("", ()) if self.workspace is None else ("workspace=?", (self.workspace,))

    def _write_run_record(self, run_id: str, row: dict) -> None:
        """runs/<run_id>/run.json: what `runs check --repair` needs to re-index the run without the database."""
        keep = {
            k: row[k] for k in ("id", "created", "name", "pair", "objective", "config", "seed", "device", "parent_id")
        }
        if row.get("workspace"):
            keep["workspace"] = row["workspace"]
        keep["config"] = json.loads(keep["config"])
        try:
            atomic_write_bytes(self.run_dir(run_id) / RUN_RECORD, json.dumps(keep, sort_keys=True).encode())
        except OSError:
            pass  # a recovery aid only: the row is what counts (and its write reports a full disk)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run (state, error, pid, host, heartbeat, step, epoch, summary, ...)."""
        bad = set(fields) - set(_RUN_COLUMNS) - {"id"}
        if bad or "id" in fields:
            raise ValueError(f"RunStore.update_run got unknown field(s) {sorted(bad | ({'id'} & set(fields)))}.")
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"The 'state' of a run must be one of {STATES}. Got {fields['state']!r} instead.")
        for k in ("summary", "versions"):
            if k in fields and not isinstance(fields[k], (str, type(None))):
                fields[k] = json.dumps(fields[k], sort_keys=True)
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as con:
            n = con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id)).rowcount
        if n == 0:
            raise StoreError(f"There is no run with id {run_id!r} in {self.db_path}.")

    def set_state(self, run_id: str, state: str, *, error: str | None = None) -> None:
        """Move a run to a state (one of STATES), with the error text for 'failed'."""
        fields: dict[str, Any] = {"state": state}
        if error is not None:
            fields["error"] = error
        self.update_run(run_id, **fields)

    def heartbeat(self, run_id: str, *, step: int | None = None, epoch: int | None = None) -> None:
        fields: dict[str, Any] = {"heartbeat": time.time()}
        if step is not None:
            fields["step"] = step
        if epoch is not None:
            fields["epoch"] = epoch
        self.update_run(run_id, **fields)

    def claim(self, run_id: str, pid: int) -> bool:
        """Atomically move a queued run to 'running' for this process; False if someone else did."""
        with self._tx() as con:
            n = con.execute(
                "UPDATE runs SET state='running', pid=?, host=?, heartbeat=?, updated=? WHERE id=? AND state='queued'",
                (pid, socket.gethostname(), time.time(), time.time(), run_id),
            ).rowcount
        return n == 1

    def queue_for_resume(self, run_id: str) -> bool:
        """Atomically queue an interrupted, cancelled or failed run to resume; False when it is in another state."""
        self.get_run(run_id)
        with self._tx() as con:
            self._check_room(con, 1)
            n = con.execute(
                "UPDATE runs SET state='queued', resume=1, cancel_requested=0, updated=? "
                "WHERE id=? AND state IN ('interrupted', 'cancelled', 'failed')",
                (time.time(), run_id),
            ).rowcount
        return n == 1

    def queued_count(self) -> int:
        """How many runs wait in the queue, of every workspace (the workers share one queue)."""
        return int(self._read("SELECT COUNT(*) FROM runs WHERE state='queued'", plain=True)[0][0])

    def next_queued(self) -> str | None:
        rows = self._read("SELECT id FROM runs WHERE state='queued' ORDER BY created, rowid LIMIT 1")
        return rows[0]["id"] if rows else None

    def request_cancel(self, run_id: str) -> None:
        """Ask a run to stop: a queued run is cancelled at once, a running one at its next step."""
        self.get_run(run_id)
        with self._tx() as con:
            con.execute("UPDATE runs SET cancel_requested=1, updated=? WHERE id=?", (time.time(), run_id))
            con.execute(
                "UPDATE runs SET state='cancelled', updated=? WHERE id=? AND state='queued'", (time.time(), run_id)
            )

    def cancel_requested(self, run_id: str) -> bool:
        rows = self._read("SELECT cancel_requested FROM runs WHERE id=?", (run_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def get_run(self, run_id: str) -> dict:
        """One run as a dict: columns, with `config`, `versions` and `summary` parsed."""
        rows = self._read("SELECT * FROM runs WHERE id=?", (run_id,))
        if rows and self.workspace is not None and rows[0]["workspace"] != self.workspace:
            raise _ws.foreign("run", run_id, self.workspace)
        if not rows:
            raise StoreError(
                f"There is no run with id {run_id!r} in {self.db_path}. "
                f"`python -m kdcore runs list` shows the runs there are."
            )
        return _row_to_run(rows[0])

    def chain_stages(self, chain_id: str) -> list[dict]:
        """The stage runs of a chain (TAKD, DGKD, BAN), in stage order, each as `get_run` returns it."""
        rows = self._read("SELECT * FROM runs WHERE chain_id=? ORDER BY chain_stage, created", (chain_id,))
        return [_row_to_run(r) for r in rows]

    def list_runs(self, *, state: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Runs, newest first, one row each: id, state, name, pair, objective, seed, device, created, step, epoch."""
        self.reap_stale()
        if state is not None and state not in STATES:
            raise ValueError(
                f"The 'state' argument of RunStore.list_runs must be one of {', '.join(STATES)}. Got {state!r} instead."
            )
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(
                f"The 'limit' argument of RunStore.list_runs must be a positive integer (or None for "
                f"every run). Got {limit!r} instead."
            )
        scope, args = self._scope()
        where = [c for c in ("state=?" if state else "", scope) if c]
        sql = (
            f"SELECT {', '.join(_LIST_COLUMNS)} FROM runs"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created DESC, rowid DESC"
            + (f" LIMIT {limit}" if limit else "")
        )
        rows = self._read(sql, ((state,) if state else ()) + args, plain=True)
        df = pd.DataFrame(rows, columns=_LIST_COLUMNS)
        df["created"] = pd.to_datetime(df["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        return df

    def reap_stale(self) -> list[str]:
        """Mark 'running' runs that nobody trains as interrupted.

        Decided by the lease: a run whose lease is held is being trained, however old its heartbeat
        (a paused process). A free lease means nobody trains it once its owner is gone: the process
        that took the row ended (this host), or, on another host, its heartbeat is stale."""
        host, now = socket.gethostname(), time.time()
        stale = []
        for r in self._read("SELECT id, pid, host, heartbeat FROM runs WHERE state='running'"):
            if self.lease_holder(r["id"]) is not None:
                continue
            gone = (
                (not _pid_alive(r["pid"]))
                if r["host"] in (host, None)
                else (r["heartbeat"] is None or now - r["heartbeat"] > HEARTBEAT_TIMEOUT_S)
            )
            if gone:
                stale.append(r["id"])
        for run_id in stale:
            with self._tx() as con:
                con.execute(
                    "UPDATE runs SET state='interrupted', error=COALESCE(error, ?), updated=? "
                    "WHERE id=? AND state='running'",
                    (
                        "The worker process stopped without finishing the run (killed or crashed). "
                        f"Resume it with `python -m kdcore runs resume {run_id}`.",
                        now,
                        run_id,
                    ),
                )
        return stale

    # ---- the lease: one owner per run (kdcore/jobs/lease.py) ----------------------------------------
    def acquire_lease(self, run_id: str) -> _lease.Lease:
        """Take the run's exclusive lease for this process (RunBusyError naming the holder if taken)."""
        try:
            return _lease.acquire(run_id, self.run_dir(run_id))
        except OSError as exc:
            raise StoreError(_explain_os_error(exc, self.root)) from exc

    def lease_holder(self, run_id: str) -> dict | None:
        """{host, pid, since} of the process training the run, or None when nobody does."""
        return _lease.holder(self.run_dir(run_id))

    def delete_run(self, run_id: str) -> None:
        """Remove a run: its rows, then its folder (so `runs check` does not report it as orphaned)."""
        self._own(run_id)
        holder = self.lease_holder(run_id)
        if holder is not None:
            raise _lease.RunBusyError(run_id, holder)
        with self._tx() as con:
            for table, col in (
                ("metrics", "run_id"),
                ("metric_names", "run_id"),
                ("artifacts", "run_id"),
                ("protocol_runs", "run_id"),
                ("runs", "id"),
            ):
                con.execute(f"DELETE FROM {table} WHERE {col}=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    # ---- protocols -------------------------------------------------------------------------------
    def create_protocol(
        self,
        *,
        pair: str | None = None,
        objective: str | None = None,
        plan: dict | None = None,
        runs: Iterable[dict] = (),
    ) -> str:
        """Record a protocol (a group of runs queued together) with its first runs; returns its id.

        plan: what was swept (temperatures, lams, seeds, baseline), kept as JSON
        runs: dicts with run_id, variant and seed, in the protocol's order
        """
        pid = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self._tx() as con:
            con.execute(
                "INSERT INTO protocols (id, created, pair, objective, plan, workspace) VALUES (?,?,?,?,?,?)",
                (pid, time.time(), pair, objective, json.dumps(plan or {}, sort_keys=True), self.workspace),
            )
            self._insert_protocol_runs(con, pid, list(runs), start=0)
        return pid

    def add_protocol_run(self, protocol_id: str, run_id: str, *, variant: str, seed: int | None = None) -> None:
        """Make a run a member of a protocol (after its earlier members)."""
        self._protocol_row(protocol_id)
        with self._tx() as con:
            n = con.execute("SELECT COUNT(*) FROM protocol_runs WHERE protocol_id=?", (protocol_id,)).fetchone()[0]
            self._insert_protocol_runs(
                con, protocol_id, [{"run_id": run_id, "variant": variant, "seed": seed}], start=n
            )

    @staticmethod
    def _insert_protocol_runs(con: sqlite3.Connection, pid: str, runs: list[dict], *, start: int) -> None:
        for i, r in enumerate(runs):
            if not {"run_id", "variant"} <= set(r):
                raise ValueError(f"Each run of a protocol needs 'run_id' and 'variant' (and 'seed'). Got {r!r}.")
            con.execute(
                "INSERT OR REPLACE INTO protocol_runs (protocol_id, run_id, position, variant, seed) "
                "VALUES (?,?,?,?,?)",
                (pid, r["run_id"], start + i, r["variant"], r.get("seed")),
            )

    def _protocol_row(self, protocol_id: str) -> sqlite3.Row:
        self._read_legacy_protocols()
        rows = self._read("SELECT * FROM protocols WHERE id=?", (protocol_id,))
        if rows and self.workspace is not None and rows[0]["workspace"] != self.workspace:
            raise _ws.foreign("protocol", protocol_id, self.workspace)
        if not rows:
            raise StoreError(f"There is no protocol with id {protocol_id!r} in {self.db_path}.")
        return rows[0]

    def protocol_runs(self, protocol_id: str) -> pd.DataFrame:
        """The runs of a protocol in its order: columns variant, seed, run_id, state (None for a deleted run)."""
        self._protocol_row(protocol_id)
        return pd.DataFrame(self._protocol_members(protocol_id), columns=_PROTOCOL_RUN_COLUMNS)

    def get_protocol(self, protocol_id: str) -> dict:
        """A protocol: id, created, pair, objective, its plan's fields, and runs (variant, seed, run_id, state)."""
        return self._protocol_dict(self._protocol_row(protocol_id))

    def list_protocols(self) -> list[dict]:
        """Every protocol, newest first (as get_protocol returns them)."""
        self._read_legacy_protocols()
        scope, args = self._scope()
        rows = self._read(
            f"SELECT * FROM protocols {'WHERE ' + scope if scope else ''} ORDER BY created DESC, rowid DESC", args
        )
        return [self._protocol_dict(r) for r in rows]

    def protocols_of_run(self, run_id: str) -> list[str]:
        """The ids of the protocols a run belongs to."""
        return [r["protocol_id"] for r in self._read("SELECT protocol_id FROM protocol_runs WHERE run_id=?", (run_id,))]

    def _protocol_dict(self, row: sqlite3.Row) -> dict:
        runs = self._protocol_members(row["id"])
        plan = json.loads(row["plan"]) if row["plan"] else {}
        return {
            **plan,
            "id": row["id"],
            "created": row["created"],
            "pair": row["pair"],
            "objective": row["objective"],
            "workspace": row["workspace"],
            "runs": runs,
        }

    def _protocol_members(self, protocol_id: str) -> list[dict]:
        rows = self._read(
            "SELECT p.variant, p.seed, p.run_id, r.state FROM protocol_runs p "
            "LEFT JOIN runs r ON r.id = p.run_id WHERE p.protocol_id=? ORDER BY p.position",
            (protocol_id,),
        )
        return [dict(zip(_PROTOCOL_RUN_COLUMNS, tuple(r))) for r in rows]

    def _read_legacy_protocols(self) -> None:
        """Protocols an earlier app kept as JSON files under protocols/ join the store (once; files kept)."""
        if self._legacy_protocols_read:
            return
        self._legacy_protocols_read = True
        for path in sorted((self.root / "protocols").glob("*.json")):
            try:
                meta = json.loads(path.read_text())
                plan = {k: meta.get(k) for k in ("temperatures", "lams", "seeds")}
                with self._tx() as con:
                    if con.execute("SELECT 1 FROM protocols WHERE id=?", (meta["id"],)).fetchone():
                        continue
                    con.execute(
                        "INSERT INTO protocols (id, created, pair, objective, plan) VALUES (?,?,?,?,?)",
                        (
                            meta["id"],
                            float(meta.get("created") or path.stat().st_mtime),
                            meta.get("pair"),
                            meta.get("objective"),
                            json.dumps(plan, sort_keys=True),
                        ),
                    )
                    self._insert_protocol_runs(con, meta["id"], list(meta.get("runs") or []), start=0)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a half-written or damaged file: skip it

    # ---- metrics ---------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, int, int, str, float]]) -> None:
        """Write metric rows (level, step, epoch, name, value) in one transaction; a row of a key (level,
        step, name) already there is replaced (a resumed run replays steps)."""
        values = [(run_id, lv, int(s), int(e), n, None if v is None else float(v)) for lv, s, e, n, v in rows]
        if not values:
            return
        names = dict.fromkeys((run_id, v[1], v[4]) for v in values)  # first-logged order
        with self._tx() as con:
            con.executemany("INSERT OR IGNORE INTO metric_names (run_id, level, name) VALUES (?,?,?)", names)
            con.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, level, step, epoch, name, value) VALUES (?,?,?,?,?,?)", values
            )

    def metrics(self, run_id: str, level: str = "step") -> pd.DataFrame:
        """Metrics of one run at one level as a wide DataFrame: columns step, epoch, then one per metric
        in the order the metrics were first logged."""
        if level not in LEVELS:
            raise ValueError(
                f"The 'level' argument of RunStore.metrics must be one of {LEVELS}. Got {level!r} instead."
            )
        self._own(run_id)
        rows = self._read(
            "SELECT step, epoch, name, value FROM metrics WHERE run_id=? AND level=? ORDER BY step",
            (run_id, level),
            plain=True,
        )
        if not rows:
            return pd.DataFrame(columns=["step", "epoch"])
        long = pd.DataFrame(rows, columns=["step", "epoch", "name", "value"])
        long = long.drop_duplicates(["step", "epoch", "name"], keep="last")
        wide = long.pivot(index=["step", "epoch"], columns="name", values="value")
        wide = wide[self._metric_order(run_id, level, list(long["name"].unique()))].reset_index()
        wide.columns.name = None
        return wide.sort_values(["step", "epoch"], kind="stable").reset_index(drop=True)

    def _metric_order(self, run_id: str, level: str, present: list[str]) -> list[str]:
        """The names present in the order they were first logged (names metric_names lacks, as rows a
        repair copied without it, follow by first step, then name)."""
        logged = self._read(
            "SELECT name FROM metric_names WHERE run_id=? AND level=? ORDER BY rowid", (run_id, level), plain=True
        )
        order = [n for (n,) in logged if n in set(present)]
        listed = set(order)
        return order + [n for n in present if n not in listed]

    def truncate_metrics(self, run_id: str, *, after_step: int) -> None:
        """Drop metrics logged after a step (a resumed run replays from its last checkpoint)."""
        with self._tx() as con:
            con.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, after_step))

    # ---- artifacts -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def save_artifact(
        self, run_id: str, name: str, data: bytes, *, kind: str = "file", epoch: int | None = None
    ) -> Path:
        """Write bytes as runs/<run_id>/<name> atomically and record it."""
        path = self.run_dir(run_id) / name
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise StoreError(_explain_os_error(exc, self.root)) from exc
        self.record_artifact(run_id, name, path, kind=kind, epoch=epoch, sha256=sha256_bytes(data), size=len(data))
        return path

    def record_artifact(
        self, run_id: str, name: str, path: Path, *, kind: str, epoch: int | None, sha256: str, size: int
    ) -> None:
        """Index a file of the run with its sha256 (verified whenever it is read)."""
        with self._tx() as con:
            con.execute(
                "INSERT OR REPLACE INTO artifacts (run_id, name, kind, path, created, epoch, sha256, size) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (run_id, name, kind, str(path.relative_to(self.root)), time.time(), epoch, sha256, size),
            )

    def read_artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's bytes, checked against the sha256 recorded when it was written (IntegrityError if not)."""
        self._own(run_id)
        path, expected = self._artifact_row(run_id, name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(
                f"The file {path} of run {run_id} is missing (its folder was moved or deleted?). "
                f"`python -m kdcore runs check` lists what else is missing."
            ) from None
        except OSError as exc:
            raise StoreError(f"The file {path} of run {run_id} could not be read: {exc}") from exc
        if expected is not None and sha256_bytes(data) != expected:
            raise IntegrityError(
                f"The file {path} of run {run_id} does not match the sha256 recorded when it was "
                f"written ({len(data)} bytes now): it was truncated or altered, and is not used."
            )
        return data

    def verify_artifact(self, run_id: str, name: str) -> Path:
        """The artifact's path once its bytes match the recorded sha256 (IntegrityError naming the file if not)."""
        self.read_artifact(run_id, name)
        return self._artifact_row(run_id, name)[0]

    def _artifact_row(self, run_id: str, name: str) -> tuple[Path, str | None]:
        rows = self._read("SELECT path, sha256 FROM artifacts WHERE run_id=? AND name=?", (run_id, name))
        if not rows:
            raise StoreError(f"Run {run_id!r} has no artifact named {name!r}.")
        return self.root / rows[0]["path"], rows[0]["sha256"]

    def save_student(
        self,
        run_id: str,
        state_dict: dict,
        *,
        epoch: int | None = None,
        final: bool = False,
        metadata: dict | None = None,
    ) -> Path:
        """Student weights as safetensors: student.safetensors (final) or student_epoch{e}.safetensors.
        Tied weights are saved under each of their names (loading them into the model ties them again)."""
        from safetensors.torch import save

        from kdcore.weights import tensors_for_safetensors

        tensors = tensors_for_safetensors(state_dict)  # tied weights: one copy per name
        meta = {k: str(v) for k, v in (metadata or {}).items()}
        name = "student.safetensors" if final else f"student_epoch{epoch}.safetensors"
        return self.save_artifact(run_id, name, save(tensors, metadata=meta), kind="student", epoch=epoch)

    def artifacts(self, run_id: str) -> pd.DataFrame:
        rows = self._read(
            "SELECT name, kind, path, epoch, created, sha256, size FROM artifacts WHERE run_id=? ORDER BY created",
            (run_id,),
        )
        return pd.DataFrame(
            [tuple(r) for r in rows], columns=["name", "kind", "path", "epoch", "created", "sha256", "size"]
        )

    def artifact_path(self, run_id: str, name: str) -> Path:
        rows = self._read("SELECT path FROM artifacts WHERE run_id=? AND name=?", (run_id, name))
        if not rows:
            raise StoreError(f"Run {run_id!r} has no artifact named {name!r}.")
        return self.root / rows[0]["path"]

    def checkpoints(self, run_id: str) -> list[int]:
        """Epochs at which student weights were saved."""
        rows = self._read(
            "SELECT epoch FROM artifacts WHERE run_id=? AND kind='student' AND epoch IS NOT NULL "
            "AND name != 'student.safetensors' "
            "ORDER BY epoch",
            (run_id,),
        )
        return [r["epoch"] for r in rows]

    def load_student(self, run_id: str, *, epoch: int | None = None) -> dict:
        """The student's state dict (safetensors): the final weights, or those saved at an epoch."""
        from safetensors.torch import load

        name = "student.safetensors" if epoch is None else f"student_epoch{epoch}.safetensors"
        return load(self.read_artifact(run_id, name))


def _row_to_run(row: sqlite3.Row) -> dict:
    d = dict(row)
    for k in ("config", "versions", "summary"):
        d[k] = json.loads(d[k]) if d.get(k) else ({} if k != "summary" else None)
    d["cancel_requested"] = bool(d["cancel_requested"])
    return d
