"""`python -m kdcore runs check [--repair]`: is the run store whole?

    report = check_store(root)             # nothing is changed
    report = check_store(root, repair=True)

Checks SQLite's `PRAGMA integrity_check`, every artifact against the sha256 recorded when it was
written, every teacher-cache file against the sha256 beside it, and lists run folders that the
database does not know (orphans: a deleted or damaged store must not hide them). `repair` moves a
damaged database aside (runs.sqlite.damaged-<time>, rows it can still read are copied into a new
one) and re-indexes each orphaned folder from its run.json and its files (its metrics are lost;
the run comes back 'completed' when it has final weights, else 'interrupted').
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from kdcore.jobs.store import RUN_RECORD, RunStore, StoreError, sha256_file

_COPY_TABLES = ("runs", "metrics", "metric_names", "artifacts", "protocols", "protocol_runs")
_REINDEX_NOTE = "Re-indexed by `runs check --repair` from its folder; its metrics were lost with the store."


@dataclass
class CheckReport:
    """What `runs check` found (and, with repair, did)."""

    integrity: list[str] = field(default_factory=list)  # "ok", or SQLite's complaints
    bad_artifacts: list[str] = field(default_factory=list)  # one line per missing or mismatching file
    unverified: list[str] = field(default_factory=list)  # artifacts written before checksums were kept
    orphans: list[str] = field(default_factory=list)  # run folders the database does not know
    repaired: list[str] = field(default_factory=list)  # what --repair did

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"] and not self.bad_artifacts and not self.orphans

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "integrity": self.integrity,
            "bad_artifacts": self.bad_artifacts,
            "unverified": self.unverified,
            "orphans": self.orphans,
            "repaired": self.repaired,
        }


def integrity(db_path: Path) -> list[str]:
    """SQLite's integrity_check lines (["ok"] for a sound database; a file that is no database says so)."""
    if not db_path.is_file():
        return ["ok"]
    try:
        con = sqlite3.connect(db_path, timeout=30.0)
        try:
            return [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return [f"the database cannot be read: {exc}"]


def check_store(root: Path, *, repair: bool = False) -> CheckReport:
    report = CheckReport(integrity=integrity(root / "runs.sqlite"))
    if report.integrity != ["ok"] and repair:
        report.repaired.append(_rebuild(root))
        report.integrity = integrity(root / "runs.sqlite")
    try:
        store = RunStore(root)
    except StoreError as exc:  # damaged beyond opening: --repair moves it aside
        report.bad_artifacts.append(str(exc))
        return report
    _check_artifacts(store, report)
    _check_caches(root, report)
    report.orphans = orphan_folders(store)
    if repair:
        for run_id in list(report.orphans):
            report.repaired.append(reindex(store, run_id))
        report.orphans = orphan_folders(store)
    return report


def _check_artifacts(store: RunStore, report: CheckReport) -> None:
    rows = store._read("SELECT run_id, name, path, sha256 FROM artifacts ORDER BY run_id, name")
    for r in rows:
        path = store.root / r["path"]
        if not path.is_file():
            report.bad_artifacts.append(f"{path}: missing (run {r['run_id']})")
        elif r["sha256"] is None:
            report.unverified.append(f"{path}: no sha256 recorded (written by an earlier version)")
        elif sha256_file(path) != r["sha256"]:
            report.bad_artifacts.append(f"{path}: does not match its recorded sha256 (run {r['run_id']})")


def _check_caches(root: Path, report: CheckReport) -> None:
    from kdcore.jobs.teacher_cache import CacheMismatch, checksum_path, verify_cache_file

    for path in sorted((root / "cache").glob("*.safetensors")):
        if not checksum_path(path).is_file():
            report.unverified.append(f"{path}: no sha256 recorded (written by an earlier version; rebuilt when used)")
            continue
        try:
            verify_cache_file(path)
        except CacheMismatch as exc:
            report.bad_artifacts.append(f"{path}: {exc} (it will be rebuilt, never used)")


def orphan_folders(store: RunStore) -> list[str]:
    """Ids of the folders under runs/ that the database has no run for."""
    known = {r["id"] for r in store._read("SELECT id FROM runs")}
    folders = [p.name for p in (store.root / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(set(folders) - known)


def reindex(store: RunStore, run_id: str) -> str:
    """Bring an orphaned run folder back into the store from its run.json and files."""
    folder = store.run_dir(run_id)
    try:
        record = json.loads((folder / RUN_RECORD).read_text())
    except (OSError, ValueError):
        record = {"id": run_id, "config": {}}
    files = sorted(p for p in folder.glob("*.safetensors"))
    state = "completed" if (folder / "student.safetensors").is_file() else "interrupted"
    cfg = record.get("config") or {}
    now = time.time()
    with store._tx() as con:
        con.execute(
            "INSERT INTO runs (id, created, updated, state, name, pair, objective, config, seed, device, "
            "parent_id, error, workspace) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                record.get("created") or folder.stat().st_mtime,
                now,
                state,
                record.get("name", ""),
                cfg.get("pair"),
                cfg.get("objective"),
                json.dumps(cfg, sort_keys=True),
                record.get("seed"),
                record.get("device"),
                record.get("parent_id"),
                _REINDEX_NOTE,
                record.get("workspace"),  # a workshop participant's run stays theirs
            ),
        )
    for path in files:
        kind, epoch = _kind_of(path.name)
        store.record_artifact(
            run_id, path.name, path, kind=kind, epoch=epoch, sha256=sha256_file(path), size=path.stat().st_size
        )
    return f"re-indexed run {run_id} as {state} ({len(files)} file(s))"


def _kind_of(name: str) -> tuple[str, int | None]:
    if name == "resume.safetensors":
        return "resume", None
    if name.startswith("student_epoch") and name[13:-12].isdigit():
        return "student", int(name[13:-12])
    return ("student", None) if name == "student.safetensors" else ("file", None)


def _rebuild(root: Path) -> str:
    """Move a damaged database aside and copy the rows it still gives into a new one."""
    db = root / "runs.sqlite"
    aside = root / f"runs.sqlite.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    db.replace(aside)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    RunStore(root).close()  # a new, empty store
    copied = [t for t in _COPY_TABLES if _copy_table(aside, db, t)]
    return f"moved the damaged database to {aside.name}; rows copied from: {', '.join(copied) or 'none'}"


def _copy_table(src: Path, dst: Path, table: str) -> bool:
    try:
        old = sqlite3.connect(src)
        rows = old.execute(f"SELECT * FROM {table}").fetchall()
        cols = [d[0] for d in old.execute(f"SELECT * FROM {table} LIMIT 0").description]
        old.close()
    except sqlite3.DatabaseError:
        return False
    con = sqlite3.connect(dst, timeout=30.0)
    try:
        with con:
            con.executemany(
                f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
            )
    except sqlite3.DatabaseError:
        return False
    finally:
        con.close()
    return True


__all__ = ["CheckReport", "StoreError", "check_store", "integrity", "orphan_folders", "reindex"]
