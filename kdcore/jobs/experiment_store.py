"""Experiments in the run store: each one a protocol (objective "experiment:<kind>", its runs the
members) and its report, a JSON file beside the database (<store>/experiments/<id>.json).

    eid = create_experiment(store, "plan", "digits", spec={...}, planned=24)
    res = run_member(store, eid, "T=2", cfg, pair)          # runs the job, joins the experiment
    run_members(store, eid, [(variant, cfg, pair), ...], rows)  # one after another, until a cancel
    save_report(store, eid, report); load_report(store, eid); list_experiments(store)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from typing import Any, cast

from kdcore.jobs.config import JobConfig
from kdcore.jobs.store import FINAL_STATES, RunStore, StoreError

PREFIX = "experiment:"  # the protocol objective of an experiment
KINDS = ("plan", "capacity", "across", "repro")


def create_experiment(store: RunStore, kind: str, pair: str | None, *, spec: dict, planned: int) -> str:
    """Record a new experiment (no runs yet); returns its id."""
    if kind not in KINDS:
        raise ValueError(f"The kind of an experiment must be one of {KINDS}. Got {kind!r}.")
    return store.create_protocol(
        pair=pair, objective=PREFIX + kind, plan={"kind": kind, "spec": spec, "planned": planned}
    )


def run_member(
    store: RunStore,
    experiment_id: str,
    variant: str,
    config: JobConfig,
    pair: Any = None,
    *,
    callback: Any = None,
    cancel: Any = None,
) -> dict:
    """Run one job of the experiment in this process and record it as a member; returns
    {variant, seed, run_id, state}."""
    from kdcore.jobs.runner import run_job

    res = run_job(config, store=store, pair=pair, callback=callback, cancel=cancel)
    if res.run_id is not None:
        store.add_protocol_run(experiment_id, res.run_id, variant=variant, seed=config.seed)
    return {"variant": variant, "seed": config.seed, "run_id": res.run_id, "state": res.state}


def run_members(
    store: RunStore,
    experiment_id: str,
    jobs: Iterable[tuple[str, JobConfig, Any]],
    rows: list[dict],
    *,
    callback: Any = None,
    cancel: Any = None,
) -> bool:
    """Run the jobs (variant, config, pair) one after another as members, each announced to the callback
    ({"event": "experiment_run", "index", "variant", "seed"}) and its row appended to `rows`; False when a
    run was cancelled (the jobs after it are not run)."""
    for variant, config, pair in jobs:
        if callback is not None:
            callback({"event": "experiment_run", "index": len(rows), "variant": variant, "seed": config.seed})
        rows.append(run_member(store, experiment_id, variant, config, pair, callback=callback, cancel=cancel))
        if rows[-1]["state"] == "cancelled":
            return False
    return True


class JsonSpec:
    """Mixed into an experiment's frozen spec dataclass: `to_dict()`, its fields as JSON (tuples as lists,
    nested specs as dicts), as the store keeps it."""

    def to_dict(self) -> dict:
        return _clean(dataclasses.asdict(cast(Any, self)))


def _path(store: RunStore, experiment_id: str) -> Any:
    if not isinstance(experiment_id, str) or not experiment_id or "/" in experiment_id or ".." in experiment_id:
        raise StoreError(f"An experiment id is a protocol id such as 20250101-120000-abc123. Got {experiment_id!r}.")
    return store.root / "experiments" / f"{experiment_id}.json"


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def save_report(store: RunStore, experiment_id: str, report: dict) -> None:
    """Keep the experiment's report (replacing an earlier one), written atomically."""
    store.get_protocol(experiment_id)  # a StoreError names a missing experiment
    path = _path(store, experiment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(report), indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def load_report(store: RunStore, experiment_id: str) -> dict | None:
    """The experiment's report, or None while it runs (or when it stopped before writing one)."""
    if store.workspace is not None:
        store.get_protocol(experiment_id)  # a workshop participant: their own experiments only
    path = _path(store, experiment_id)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def list_experiments(store: RunStore) -> list[dict]:
    """Every experiment, newest first: id, kind, pair, created, spec, planned, done (runs in a final
    state), has_report."""
    out = []
    for p in store.list_protocols():
        if not str(p.get("objective") or "").startswith(PREFIX):
            continue
        done = sum(r["state"] in FINAL_STATES for r in p["runs"])
        out.append(
            {
                "id": p["id"],
                "kind": p.get("kind"),
                "pair": p.get("pair"),
                "created": p["created"],
                "spec": p.get("spec") or {},
                "planned": p.get("planned"),
                "done": done,
                "has_report": _path(store, p["id"]).exists(),
            }
        )
    return out
