"""What a leaderboard may reuse from the run store instead of training again.

A leaderboard is kept as a protocol whose plan carries `kind: "leaderboard"` and `key`: the sha256 of
its (method, config) list with the seeds expanded and the runs' names left out, so two requests with
the same pair, methods, seeds, budget and method defaults share a key. Asking again for a key whose
protocol has all its runs completed reads that protocol; a single run is reused when a completed
run (or, for a queued leaderboard, a queued or running one) has the same config and seed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from kdcore.jobs.config import ConfigError, JobConfig
from kdcore.jobs.store import RunStore

KIND = "leaderboard"  # the mark in the protocol's plan
_IGNORED = ("name",)  # config fields that do not change what a run trains


def _normal(config: JobConfig | dict) -> dict:
    """A config as a JSON-ready dict without the fields in _IGNORED (stored configs go through
    JobConfig first, so a field added since they were stored takes its default)."""
    if isinstance(config, dict):
        try:
            config = JobConfig.from_dict(config)
        except (ConfigError, TypeError, ValueError):
            return {"unreadable": json.dumps(config, sort_keys=True, default=str)}
    d = json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str))
    return {k: v for k, v in d.items() if k not in _IGNORED}


def config_key(config: JobConfig | dict) -> str:
    """sha256 of the config (JobConfig or stored dict) without its name."""
    return hashlib.sha256(json.dumps(_normal(config), sort_keys=True).encode()).hexdigest()


def plan_key(plan: Iterable[tuple[str, JobConfig]]) -> str:
    """sha256 of a leaderboard's (method, config) list, in its order, names left out."""
    items = [[method, _normal(cfg)] for method, cfg in plan]
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def run_index(
    store: RunStore, plan: list[tuple[str, JobConfig]], states: tuple[str, ...] = ("completed",)
) -> dict[str, str]:
    """{config_key: run id} of the runs in one of `states` that could be runs of `plan` (same pair,
    objective and seed; the newest run of a config wins)."""
    runs = store.list_runs()
    pairs, objectives = {c.pair for _, c in plan}, {c.objective for _, c in plan}
    seeds = {c.seed for _, c in plan}
    runs = runs[
        runs["pair"].isin(pairs)
        & runs["objective"].isin(objectives)
        & runs["seed"].isin(seeds)
        & runs["state"].isin(states)
    ]
    out: dict[str, str] = {}
    for run_id in runs["id"]:  # newest first
        key = config_key(store.get_run(run_id)["config"])
        out.setdefault(key, run_id)
    return out


def find_leaderboard(store: RunStore, key: str, n_runs: int, *, active: bool = False) -> dict | None:
    """The newest leaderboard protocol with this key and `n_runs` members, all completed (with
    active=True also one whose members are still queued or running), else None."""
    ok = ("completed", "queued", "running") if active else ("completed",)
    for meta in store.list_protocols():
        if meta.get("kind") != KIND or meta.get("key") != key or len(meta["runs"]) != n_runs:
            continue
        if all(r.get("state") in ok for r in meta["runs"]):
            return meta
    return None


def leaderboards(store: RunStore, pair: str | None = None) -> list[dict]:
    """The leaderboards kept in the run store (on `pair`, or all), newest first, as
    RunStore.get_protocol returns them (plan fields methods, seeds, budget, key; runs)."""
    return [
        m for m in store.list_protocols() if m.get("kind") == KIND and m["runs"] and (pair is None or m["pair"] == pair)
    ]


__all__ = ["KIND", "config_key", "find_leaderboard", "leaderboards", "plan_key", "run_index"]
