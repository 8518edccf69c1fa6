"""Standard experiments in one call: the student alone, temperature and λ sweeps, repeats over seeds.

    table = run_protocol(JobConfig(pair="digits", objective="kd", epochs=5),
                         temperatures=[1, 4, 8], seeds=[0, 1, 2]).table
    pid = queue_protocol(JobConfig(...), temperatures=[1, 4, 8])   # the same, on the background worker
    table, done, total = protocol_status(store, pid)

Which runs belong to which protocol is kept by the run store (`RunStore.create_protocol`,
`list_protocols`, `protocol_runs`), for protocols run here and those queued on the worker alike.

The table has one row per variant with the mean ± std over seeds (std with ddof = 1, NaN for a
single seed) of both the best epoch's and the final epoch's validation metric (accuracy; for
language models the loss, where lower is better).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from kdcore.jobs.config import ALIASES, JobConfig
from kdcore.jobs.recipes import student_alone
from kdcore.jobs.store import FINAL_STATES, RunStore


def _takes(param: str) -> list[str]:
    """The methods of the table that take `param` (a sweep over it needs one of them)."""
    from kdcore.methods import all_methods

    return [m.name for m in all_methods() if m.takes(param)]


@dataclass
class ProtocolResult:
    """The summary table and the runs behind it."""

    table: pd.DataFrame  # one row per variant (see protocol_table)
    runs: pd.DataFrame  # variant, seed, run_id, state
    protocol_id: str | None = None  # the protocol's id in the run store


class ProtocolStatus(NamedTuple):
    """How far a queued protocol is: its summary table so far, runs finished, runs in all."""

    table: pd.DataFrame
    done: int
    total: int


def protocol_configs(
    base: JobConfig,
    *,
    temperatures: Iterable[float] = (),
    lams: Iterable[float] = (),
    seeds: Iterable[int] = (0, 1, 2),
    baseline: bool = True,
) -> list[tuple[str, JobConfig]]:
    """The (variant name, config) list of a protocol, seeds expanded. With no sweep, the base
    objective itself is one variant."""
    base.validate()
    temperatures, lams, seeds = list(temperatures), list(lams), list(seeds)
    if not seeds:
        raise ValueError("The 'seeds' parameter of run_protocol must list at least one seed. Got an empty list.")
    obj = ALIASES.get(base.objective, base.objective)
    if temperatures and obj not in _takes("temperature"):
        raise ValueError(
            f"A temperature sweep needs an objective with a temperature ({', '.join(_takes('temperature'))}). "
            f"Got objective {base.objective!r}."
        )
    if lams and obj not in _takes("lam"):
        raise ValueError(
            f"A λ sweep needs an objective with KD's weight λ ({', '.join(_takes('lam'))}). "
            f"Got objective {base.objective!r}."
        )
    variants: list[tuple[str, JobConfig]] = []
    if baseline:
        variants.append(("baseline (student alone)", student_alone(base)))
    for t in temperatures:
        variants.append((f"{obj} T={t:g}", replace(base, temperature=float(t))))
    for lam in lams:
        variants.append((f"{obj} λ={lam:g}", replace(base, lam=float(lam))))
    if not temperatures and not lams and obj != "ce":
        variants.append((obj, base))
    out = []
    for name, cfg in variants:
        for s in seeds:
            c = replace(cfg, seed=int(s), name=f"{name} seed={s}")
            c.validate()
            out.append((name, c))
    return out


def protocol_table(store: RunStore, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of the best and final validation metric, one row per variant.

    runs: DataFrame with columns variant, seed, run_id (as in ProtocolResult.runs).
    """
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        best, final, metric, states = [], [], None, []
        cfg = None
        for rid in group["run_id"]:
            run = store.get_run(rid)
            states.append(run["state"])
            cfg = cfg or run["config"]
            metric = (run["summary"] or {}).get("metric", metric or "val_acc")
            lm = metric == "val_loss"  # lower is better
            ep = store.metrics(rid, "epoch")
            ep = ep[ep["epoch"] >= 1] if "epoch" in ep else ep  # epoch 0: the student before training
            vals = ep[metric].dropna().to_numpy() if metric in ep else np.array([])
            if not vals.size:
                continue
            best.append(float(vals.min() if lm else vals.max()))
            final.append(float(vals[-1]))
        rows.append(
            {
                "variant": variant,
                "objective": cfg.get("objective") if cfg else None,
                "temperature": cfg.get("temperature") if cfg else None,
                "lam": cfg.get("lam") if cfg else None,
                "metric": metric,
                "n_seeds": len(best),
                **_mean_std("best", best),
                **_mean_std("final", final),
                "states": ",".join(sorted(set(states))),
                "run_ids": ",".join(group["run_id"]),
            }
        )
    return pd.DataFrame(rows)


def _plan_record(
    base: JobConfig, temperatures: list[float], lams: list[float], seeds: list[int], baseline: bool
) -> dict:
    return {
        "pair": base.pair,
        "objective": base.objective,
        "plan": {
            "temperatures": [float(t) for t in temperatures],
            "lams": [float(v) for v in lams],
            "seeds": [int(s) for s in seeds],
            "baseline": bool(baseline),
        },
    }


def queue_protocol(
    base: JobConfig,
    *,
    temperatures: Iterable[float] = (),
    lams: Iterable[float] = (),
    seeds: Iterable[int] = (0,),
    baseline: bool = True,
    store: RunStore | None = None,
    start_worker: bool = True,
) -> str:
    """Queue every run of a protocol on the background worker and record them as one protocol in the
    run store; returns the protocol's id (for protocol_status and RunStore.get_protocol)."""
    from kdcore.jobs.worker import start_worker_process

    temperatures, lams, seeds = list(temperatures), list(lams), list(seeds)
    plan = protocol_configs(base, temperatures=temperatures, lams=lams, seeds=seeds, baseline=baseline)
    store = store if store is not None else RunStore()
    store.check_room(len(plan))  # a workshop participant's queue limit: all of them or none
    members = [
        {"variant": variant, "seed": cfg.seed, "run_id": store.create_run(cfg, state="queued")} for variant, cfg in plan
    ]
    pid = store.create_protocol(runs=members, **_plan_record(base, temperatures, lams, seeds, baseline))
    if start_worker:
        start_worker_process(store)
    return pid


def protocol_status(store: RunStore, protocol_id: str) -> ProtocolStatus:
    """(summary table, runs finished, runs in all) of a protocol in the run store."""
    runs = store.protocol_runs(protocol_id)
    done = int(runs["state"].isin(FINAL_STATES).sum())
    return ProtocolStatus(protocol_table(store, runs[["variant", "seed", "run_id"]]), done, len(runs))


def _mean_std(prefix: str, values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    mean = float(a.mean()) if a.size else float("nan")
    std = float(a.std(ddof=1)) if a.size > 1 else float("nan")
    text = "n/a" if not a.size else (f"{mean:.4f} ± {std:.4f}" if a.size > 1 else f"{mean:.4f} (1 seed)")
    return {f"{prefix}_mean": mean, f"{prefix}_std": std, prefix: text}


def run_protocol(
    base: JobConfig,
    *,
    temperatures: Iterable[float] = (),
    lams: Iterable[float] = (),
    seeds: Iterable[int] = (0, 1, 2),
    baseline: bool = True,
    store: RunStore | None = None,
    callback: Callable[[dict], object] | None = None,
    cancel: Any = None,
    pair: Any = None,
    executor: Any = None,
) -> ProtocolResult:
    """Run every variant of the protocol over the seeds, in this process, one after another; each
    run joins the protocol's record in the run store as it ends (cancel: as for run_job; pair: a
    Pair to use instead of loading `base.pair`). executor: an Executor (kdcore.jobs.executors) to run
    them on instead, several at once; the callback then gets a "run_done" event as each run ends."""
    from kdcore.jobs.runner import run_job

    temperatures, lams, seeds = list(temperatures), list(lams), list(seeds)
    plan = protocol_configs(base, temperatures=temperatures, lams=lams, seeds=seeds, baseline=baseline)
    store = store if store is not None else RunStore()
    if executor is not None:
        return _on_executor(
            executor, plan, store, _plan_record(base, temperatures, lams, seeds, baseline), callback, pair
        )
    pid = store.create_protocol(**_plan_record(base, temperatures, lams, seeds, baseline))
    records = []
    for i, (variant, cfg) in enumerate(plan):
        if callback is not None:
            callback({"event": "protocol_run", "index": i, "of": len(plan), "variant": variant, "seed": cfg.seed})
        res = run_job(cfg, store=store, callback=callback, cancel=cancel, pair=pair)
        if res.run_id is not None:
            store.add_protocol_run(pid, res.run_id, variant=variant, seed=cfg.seed)
        records.append({"variant": variant, "seed": cfg.seed, "run_id": res.run_id, "state": res.state})
        if res.state == "cancelled":
            break
    runs = pd.DataFrame(records, columns=["variant", "seed", "run_id", "state"])
    return ProtocolResult(protocol_table(store, runs), runs, pid)


def _on_executor(
    executor: Any, plan: list, store: RunStore, record: dict, callback: Callable[[dict], object] | None, pair: Any
) -> ProtocolResult:
    """run_protocol on an executor: every run queued at once, the table once all have ended."""
    from kdcore.jobs.executors import run_plan

    if pair is not None:
        raise ValueError(
            "run_protocol's 'pair' (a Pair in memory) cannot go to an executor's worker processes. "
            "Name the pair in the config (a sample name or module:factory) instead, or drop 'executor'."
        )
    pid = store.create_protocol(**record)
    records = run_plan(executor, plan, store=store, protocol_id=pid, progress=callback)
    runs = pd.DataFrame(records, columns=["variant", "seed", "run_id", "state"])
    return ProtocolResult(protocol_table(store, runs), runs, pid)
