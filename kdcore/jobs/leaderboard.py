"""The method leaderboard: several methods on one pair under the pair's recipe budget, over seeds.

    res = compare_methods("digits", ["kd", "dkd", "cakd"], seeds=[0, 1, 2])
    res.table  # method, n_seeds, metric, best/final mean ± std, gain over the student alone, rank

Every method gets the same budget (epochs, training size, lr, schedule, batch size, seed): the
pair's recipe (kdcore.jobs.recipes) with `base`'s budget fields on top; each method keeps its own
defaults for its parameters (the recipe's T and λ go only to the recipe's own objective, as
`with_recipe` does) and its task's own defaults (cakd on multi-label data: rule `labels`); a method
whose layer map is required (feature_l2, at) matches the last of the student's default layers to the
last of the teacher's (`layer_defaults`). The student alone (`ce`) is always run as the floor.
Methods that do not fit the pair are refused before anything runs. The runs are recorded as one
protocol in the run store.

Results are cached in the run store (kdcore.jobs.leaderboard_cache): asking again with the same
pair, methods, seeds and budget reads the stored leaderboard without training; a run already
completed with the same config and seed is reused. `queue_leaderboard` queues the runs on the
background worker instead (the app's Leaderboard page), `leaderboard_status` reads one back.

The gain is the method's best-epoch metric minus the student alone's, paired by seed (for a loss,
where lower is better, the other way round, so a positive gain is always better), with a 95 %
t-interval over the seeds' paired differences. Rank 1 is the best mean of the best-epoch metric;
wall_s is the mean training time of a run in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from kdcore.jobs.config import JobConfig
from kdcore.jobs.leaderboard_cache import KIND, config_key, find_leaderboard, plan_key, run_index
from kdcore.jobs.protocols import _mean_std
from kdcore.jobs.recipes import pair_recipe, student_alone, with_recipe
from kdcore.jobs.store import FINAL_STATES, RunStore
from kdcore.validation import InvalidParameterError

# JobConfig fields that make up the budget shared by every method (what `base` may set).
BUDGET_FIELDS = (
    "epochs",
    "max_steps",
    "train_size",
    "val_size",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "device",
    "checkpoints",
)
FLOOR = "ce"  # the student alone
_TABLE_COLUMNS = [
    "method",
    "n_seeds",
    "metric",
    "best_mean",
    "best_std",
    "best",
    "final_mean",
    "final_std",
    "final",
    "gain_mean",
    "gain_low",
    "gain_high",
    "gain",
    "rank",
    "wall_s",
    "states",
    "run_ids",
]


@dataclass
class LeaderboardResult:
    """The leaderboard table and the runs behind it."""

    table: pd.DataFrame  # one row per method (columns: _TABLE_COLUMNS), the student alone first
    runs: pd.DataFrame  # variant (the method), seed, run_id, state
    protocol_id: str | None  # the protocol's id in the run store
    budget: dict  # the budget every method ran with (JobConfig field -> value)
    trained: int = 0  # runs trained by this call (0: read from the run store)
    cached: bool = False  # True when the whole leaderboard was read from the run store


def method_list(methods: Iterable[str] | str) -> list[str]:
    """Canonical method names, the student alone (`ce`) first, duplicates dropped; an unknown name is
    refused with the method table's message (the known methods and the closest match)."""
    from kdcore.methods import canonical_name, unknown_method_message

    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    out = [FLOOR]
    for name in items:
        if name == "":
            continue
        canon = canonical_name(name)
        if canon is None:
            raise InvalidParameterError(unknown_method_message(name) + " Fix the name in 'methods'.")
        if canon not in out:
            out.append(canon)
    if not any(items):
        raise InvalidParameterError("The 'methods' of compare_methods must name at least one method. Got none.")
    return out


def _budget_changes(base: JobConfig | Mapping[str, Any] | None) -> dict:
    """The budget fields `base` sets: a mapping's keys, or a JobConfig's fields that differ from the defaults."""
    if base is None:
        return {}
    if isinstance(base, JobConfig):
        default = JobConfig()
        return {k: getattr(base, k) for k in BUDGET_FIELDS if getattr(base, k) != getattr(default, k)}
    if not isinstance(base, Mapping):
        raise InvalidParameterError(
            f"The 'base' of compare_methods must be a JobConfig, a mapping of budget fields or None. "
            f"Got {type(base).__name__} instead."
        )
    other = sorted(set(base) - set(BUDGET_FIELDS))
    if other:
        raise InvalidParameterError(
            f"The 'base' of compare_methods sets only the budget ({', '.join(BUDGET_FIELDS)}). "
            f"Got {other}; each method uses its own defaults for the rest, so drop those keys."
        )
    return dict(base)


def leaderboard_configs(
    pair: str,
    methods: list[str],
    seeds: list[int],
    base: JobConfig | Mapping[str, Any] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[str, JobConfig]]:
    """The (method, config) list, seeds expanded: every method on the same budget (see the module doc).
    params: {method: {parameter: value}} on top of a method's defaults (e.g. a layer map)."""
    changes = _budget_changes(base)
    recipe = pair_recipe(pair)
    params = params or {}
    out = []
    for method in methods:
        own = dict(params.get(method, {}))
        user = {"pair", "objective", "seed", *changes, *(["params"] if own else [])}
        cfg, _ = with_recipe(JobConfig(pair=pair, objective=method, params=own, **changes), recipe, user)
        cfg = student_alone(cfg) if method == FLOOR else cfg
        for s in seeds:
            out.append((method, replace(cfg, seed=int(s), name=f"{method} seed={s} (leaderboard)").validate()))
    return out


def _needs_layers(method: str) -> bool:
    from kdcore.methods import get_method

    return any(p.name == "layers" and p.required for p in get_method(method).params)


def layer_defaults(methods: list[str], pair: Any) -> dict[str, dict]:
    """{method: {"layers": {last student layer: last teacher layer}}} for each method whose layer map
    is required (feature_l2, at): the last of each model's default_layers(), the deepest features."""
    student, teacher = pair.student.default_layers(), pair.teacher.default_layers()
    needing = [m for m in methods if _needs_layers(m)]
    if needing and not (student and teacher):
        raise InvalidParameterError(
            f"The methods {needing} need a layer map, and the pair {pair.name!r} names no default layers "
            "to match. Drop them from 'methods', or run them from `python -m kdcore distill --param layers=...`."
        )
    return {m: {"layers": {student[-1]: teacher[-1]}} for m in needing}


def _plan(
    pair: str, methods: Iterable[str] | str, seeds: Iterable[int], base: Any, extra: Mapping | None = None
) -> tuple[list[str], list[int], list[tuple[str, JobConfig]], Any]:
    """(method names, seeds, the (method, config) plan, the loaded pair or None when the plan did not
    need it): a method gets its task's own defaults (the method table's task_defaults, as the Distill
    form starts from) and, when it needs a layer map, layer_defaults'; `extra` {method: {param: value}} on top."""
    from kdcore.jobs.resolve import resolve_pair
    from kdcore.methods import get_method

    names, seed_list = method_list(methods), _seed_list(seeds)
    needs_pair = any(_needs_layers(m) or get_method(m).task_defaults for m in names)
    loaded = resolve_pair(pair) if needs_pair else None
    params: dict[str, dict] = {}
    if loaded is not None:
        task = loaded.dataset.task if loaded.dataset is not None else None
        params = {m: dict(get_method(m).task_defaults.get(task, {})) for m in names}
        for m, layers in layer_defaults(names, loaded).items():
            params[m].update(layers)
    from kdcore.methods import canonical_name

    for name, own in (extra or {}).items():
        m = canonical_name(name) or name
        if m not in names:
            raise InvalidParameterError(
                f"The 'params' of compare_methods name the method {m!r}, which is not compared ({names}). "
                "Give parameters only for the methods in 'methods'."
            )
        params[m] = {**params.get(m, {}), **dict(own)}
    return names, seed_list, leaderboard_configs(pair, names, seed_list, base, params), loaded


def _fit_problem(method: str, cfg: JobConfig, pair: Any) -> str | None:
    """Why `method` with `cfg` cannot run on `pair` (the method's own check), or None when it can."""
    from kdcore.jobs.chain import is_chain, plan_chain
    from kdcore.jobs.prepare import prepare_run
    from kdcore.jobs.procedures import check_procedure

    try:
        plan_chain(cfg, pair) if is_chain(method) else prepare_run(cfg, pair)
        check_procedure(cfg, pair)  # blockwise, pwkd, zskt, weight_distill: their own plan (stages, widths, data)
    except ValueError as exc:
        return str(exc)
    return None


_MAX_EPOCHS_TRIED = 1024


def min_epochs(method: str, cfg: JobConfig, pair: Any) -> int | None:
    """The fewest epochs (above cfg.epochs) with which `method` fits `pair`, the rest of `cfg` unchanged, or
    None when more epochs do not help (the refusal has another reason). Doubling, then bisection: a method
    that fits with E epochs fits with more (its stages, phases or grades need at least one epoch each)."""
    low, high = cfg.epochs, max(2, 2 * cfg.epochs)
    while _fit_problem(method, replace(cfg, epochs=high), pair) is not None:
        if high >= _MAX_EPOCHS_TRIED:
            return None
        low, high = high, min(2 * high, _MAX_EPOCHS_TRIED)
    while high - low > 1:  # low refused, high fits
        mid = (low + high) // 2
        low, high = (low, mid) if _fit_problem(method, replace(cfg, epochs=mid), pair) is None else (mid, high)
    return high


def _check_fits(plan: list[tuple[str, JobConfig]], pair: Any) -> None:
    """Refuses, before anything runs, every method that does not fit the pair (the method table's reason);
    a method that a larger epoch budget would let run says the fewest epochs it needs."""
    problems, needed = [], []
    for method, cfg in {m: c for m, c in plan}.items():
        problem = _fit_problem(method, cfg, pair)
        if problem is None:
            continue
        least = min_epochs(method, cfg, pair)
        if least is not None:
            needed.append(least)
            problem += f" [{method} runs from epochs={least} on]"
        problems.append(f"{method}: {problem}")
    if problems:
        raise_epochs = f", or raise the epochs to at least {max(needed)}" if needed else ""
        raise InvalidParameterError(
            f"Some methods cannot run on the pair {plan[0][1].pair!r}:\n"
            + "\n".join(problems)
            + f"\nDrop them from 'methods'{raise_epochs} (`python -m kdcore methods` lists the tasks each fits)."
        )


def _seed_list(seeds: Iterable[int]) -> list[int]:
    out = list(seeds)
    if not out or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in out):
        raise InvalidParameterError(
            f"The 'seeds' of compare_methods must be a non-empty list of integers ≥ 0 (e.g. [0, 1, 2]). Got {out!r}."
        )
    return [int(s) for s in dict.fromkeys(out)]


def compare_methods(
    pair: str,
    methods: Iterable[str] | str,
    seeds: Iterable[int],
    *,
    base: JobConfig | Mapping[str, Any] | None = None,
    store: RunStore | None = None,
    callback: Callable[[dict], object] | None = None,
    reuse: bool = True,
    executor: Any = None,
    metric: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> LeaderboardResult:
    """Run every method (and the student alone) on `pair` over `seeds`, in this process, one after
    another; returns the leaderboard. base: budget fields on top of the recipe (a JobConfig's
    non-default budget fields, or a mapping {field: value}); callback: gets a "leaderboard_run"
    event before each run (reused: True for a run read from the store) and every run's own events;
    reuse: read a stored leaderboard with the same settings, and reuse completed runs with the same
    config (False trains every run again); executor: an Executor (kdcore.jobs.executors) to run the
    runs still to train on, several at once (a chain method's run is its whole chain); the callback then
    gets a "run_done" event as each run ends; metric: the epoch metric to rank by (None: each run's
    own, val_loss for causal LMs; "heldout_em": greedy exact match on held-out prompts, kdcore.jobs.heldout);
    params: {method: {parameter: value}} on top of a method's defaults (e.g. {"gkd": {"prompts": "records"}})."""
    from kdcore.jobs.resolve import resolve_pair

    _check_metric(metric)
    names, seed_list, plan, loaded = _plan(pair, methods, seeds, base, params)
    store = store if store is not None else RunStore()
    key = plan_key(plan)
    if reuse and (meta := find_leaderboard(store, key, len(plan))) is not None:
        return replace(stored_leaderboard(store, meta["id"], metric), cached=True)
    loaded = loaded if loaded is not None else resolve_pair(pair)
    _check_fits(plan, loaded)
    pid = store.create_protocol(pair=pair, objective=KIND, plan=_record(plan, names, seed_list, key))
    done = run_index(store, plan) if reuse else {}
    if executor is not None:
        runs, trained = _run_on_executor(executor, plan, store, pid, done, callback)
    else:
        runs, trained = _run_plan(plan, store, pid, loaded, done, callback)
    return LeaderboardResult(leaderboard_table(store, runs, metric), runs, pid, _budget(plan), trained)


def _check_metric(metric: str | None) -> None:
    if metric is not None and (not isinstance(metric, str) or not metric.isidentifier()):
        raise InvalidParameterError(
            f"The 'metric' of compare_methods must be None or an epoch metric's name (e.g. 'val_acc', "
            f"'heldout_em'). Got {metric!r} instead."
        )


def _budget(plan: list[tuple[str, JobConfig]]) -> dict:
    return {k: getattr(plan[0][1], k) for k in BUDGET_FIELDS}


def _run_on_executor(
    executor: Any,
    plan: list[tuple[str, JobConfig]],
    store: RunStore,
    pid: str,
    done: dict[str, str],
    callback: Callable[[dict], object] | None,
) -> tuple[pd.DataFrame, int]:
    """The runs of `plan` not in `done` trained on `executor` (several at once) into protocol `pid`, the
    completed ones in `done` joined to it; (runs: variant, seed, run_id, state; how many were trained)."""
    from kdcore.jobs.executors import run_plan

    todo = [(m, c) for m, c in plan if config_key(c) not in done]
    rows = run_plan(executor, todo, store=store, protocol_id=pid, progress=callback) if todo else []
    trained = pd.DataFrame(rows, columns=["variant", "seed", "run_id", "state"])
    reused = []
    for method, cfg in plan:
        run_id = done.get(config_key(cfg))
        if run_id is not None:
            store.add_protocol_run(pid, run_id, variant=method, seed=cfg.seed)
            reused.append({"variant": method, "seed": cfg.seed, "run_id": run_id, "state": "completed"})
    runs = pd.concat([trained, pd.DataFrame(reused)], ignore_index=True) if reused else trained
    return runs[["variant", "seed", "run_id", "state"]], len(todo)


def _record(plan: list[tuple[str, JobConfig]], names: list[str], seeds: list[int], key: str) -> dict:
    """The protocol's plan: what the leaderboard compares, its budget and its cache key."""
    return {
        "kind": KIND,
        "methods": names,
        "seeds": seeds,
        "budget": _budget(plan),
        "baseline": True,
        "key": key,
        "n_runs": len(plan),
    }


def _run_plan(
    plan: list[tuple[str, JobConfig]],
    store: RunStore,
    pid: str,
    loaded: Any,
    done: dict[str, str],
    callback: Callable[[dict], object] | None,
) -> tuple[pd.DataFrame, int]:
    """Train each run of `plan` (or take the completed run `done` has for its config) into protocol
    `pid`; (runs: variant, seed, run_id, state; how many were trained)."""
    from kdcore.jobs.chain import is_chain, run_chain
    from kdcore.jobs.runner import run_job

    rows, trained = [], 0
    for i, (method, cfg) in enumerate(plan):
        run_id = done.get(config_key(cfg))
        if callback is not None:
            ev = {"event": "leaderboard_run", "index": i, "of": len(plan), "method": method, "seed": cfg.seed}
            callback({**ev, "reused": run_id is not None})
        state = "completed"
        if run_id is None and is_chain(cfg.objective):  # takd, dgkd, ban: the chain, scored by its final student
            chain = run_chain(cfg, store=store, callback=callback, pair=loaded)
            run_id, state, trained = chain.chain_id, chain.state, trained + 1
        elif run_id is None:
            res = run_job(cfg, store=store, callback=callback, pair=loaded)
            run_id, state, trained = res.run_id, res.state, trained + 1
        if run_id is not None:
            store.add_protocol_run(pid, run_id, variant=method, seed=cfg.seed)
        rows.append({"variant": method, "seed": cfg.seed, "run_id": run_id, "state": state})
    return pd.DataFrame(rows, columns=["variant", "seed", "run_id", "state"]), trained


def queue_leaderboard(
    pair: str,
    methods: Iterable[str] | str,
    seeds: Iterable[int],
    *,
    base: JobConfig | Mapping[str, Any] | None = None,
    store: RunStore | None = None,
    start_worker: bool = True,
) -> str:
    """Queue the leaderboard's runs on the background worker as one protocol; returns its id (for
    leaderboard_status). A stored leaderboard with the same settings, complete or still queued or
    running, is returned as it is; runs with the same config that are completed, queued or running
    join the new one instead of being queued again."""
    from kdcore.jobs.resolve import resolve_pair
    from kdcore.jobs.worker import start_worker_process

    names, seed_list, plan, loaded = _plan(pair, methods, seeds, base)
    store = store if store is not None else RunStore()
    key = plan_key(plan)
    meta = find_leaderboard(store, key, len(plan), active=True)
    if meta is not None:
        return str(meta["id"])
    _check_fits(plan, loaded if loaded is not None else resolve_pair(pair))
    found = run_index(store, plan, ("completed", "queued", "running"))
    store.check_room(sum(config_key(cfg) not in found for _, cfg in plan))  # all of them or none
    members, queued = [], 0
    for method, cfg in plan:
        run_id = found.get(config_key(cfg))
        if run_id is None:
            run_id, queued = store.create_run(cfg, state="queued"), queued + 1
        members.append({"variant": method, "seed": cfg.seed, "run_id": run_id})
    record = _record(plan, names, seed_list, key)
    pid = store.create_protocol(pair=pair, objective=KIND, plan=record, runs=members)
    if start_worker and queued:
        start_worker_process(store)
    return pid


def stored_leaderboard(store: RunStore, protocol_id: str, metric: str | None = None) -> LeaderboardResult:
    """A leaderboard kept in the run store, as compare_methods returns it (runs still queued or
    running count as no seed yet); metric: as in compare_methods."""
    meta = store.get_protocol(protocol_id)
    runs = store.protocol_runs(protocol_id)
    runs = runs[runs["state"].notna()].reset_index(drop=True)  # a run deleted since is left out
    table = leaderboard_table(store, runs, metric)
    return LeaderboardResult(table, runs, protocol_id, dict(meta.get("budget") or {}))


def leaderboard_status(
    store: RunStore, protocol_id: str, metric: str | None = None
) -> tuple[LeaderboardResult, int, int]:
    """(the leaderboard so far, runs finished, runs in all) of a stored leaderboard; metric: as in
    compare_methods (None: each run's own)."""
    res = stored_leaderboard(store, protocol_id, metric)
    done = int(res.runs["state"].isin(FINAL_STATES).sum())
    return res, done, len(res.runs)


def seed_values(store: RunStore, runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """One row per finished run with a metric: variant, seed, metric, best (best epoch's value), final,
    wall_s (seconds of training: steps / steps per second, NaN when not recorded). A run still queued
    or running is left out: its epochs so far are no result yet. metric: the epoch metric to read
    (None: each run's summary metric); a run without it is left out."""
    rows = []
    for r in runs.dropna(subset=["run_id"]).itertuples():
        run = store.get_run(r.run_id)
        if run["state"] in ("queued", "running"):
            continue
        summary = run["summary"] or {}
        name = metric or summary.get("metric", "val_acc")
        wall = summary["steps"] / summary["steps_per_s"] if summary.get("steps_per_s") else float("nan")
        ep = store.metrics(r.run_id, "epoch")
        ep = ep[ep["epoch"] >= 1] if "epoch" in ep else ep  # epoch 0: the student before training
        vals = ep[name].dropna().to_numpy() if name in ep else np.array([])
        if vals.size:
            best = vals.min() if name == "val_loss" else vals.max()
            rows.append({"variant": r.variant, "seed": r.seed, "metric": name, "best": best, "final": vals[-1]})
            rows[-1]["wall_s"] = wall
    return pd.DataFrame(rows, columns=["variant", "seed", "metric", "best", "final", "wall_s"])


def t_interval(diffs: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean of `diffs` (NaN bounds for fewer than 2 values)."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def _gain(per_seed: pd.DataFrame, method: str) -> dict:
    """The paired gain of `method` over the student alone on the best-epoch metric."""
    mine, floor = (per_seed[per_seed["variant"] == m].set_index("seed")["best"] for m in (method, FLOOR))
    both = mine.index.intersection(floor.index)
    lower_better = (per_seed["metric"] == "val_loss").any()
    diffs = (floor[both] - mine[both]) if lower_better else (mine[both] - floor[both])
    mean, low, high = t_interval(diffs.to_numpy())
    if np.isnan(mean):
        text = "n/a"
    elif np.isnan(low):
        text = f"{mean:+.4f} (1 seed)"
    else:
        text = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"
    return {"gain_mean": mean, "gain_low": low, "gain_high": high, "gain": text}


def _method_rows(store: RunStore, runs: pd.DataFrame, per_seed: pd.DataFrame) -> pd.DataFrame:
    """One row per method, in the runs' order: n_seeds, metric, best/final mean ± std over seeds (as
    kdcore.jobs.protocols.protocol_table gives them), states, run_ids."""
    rows = []
    for method, group in runs.groupby("variant", sort=False):
        mine = per_seed[per_seed["variant"] == method]
        ids = group["run_id"].dropna()
        states = group["state"] if "state" in group else [store.get_run(r)["state"] for r in ids]
        rows.append(
            {
                "method": method,
                "n_seeds": len(mine),
                "metric": mine["metric"].iloc[0] if len(mine) else "val_acc",
                **_mean_std("best", [float(v) for v in mine["best"]]),
                **_mean_std("final", [float(v) for v in mine["final"]]),
                "states": ",".join(sorted({str(x) for x in states})),
                "run_ids": ",".join(map(str, ids)),
                "wall_s": mine["wall_s"].mean() if len(mine) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def leaderboard_table(store: RunStore, runs: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The leaderboard of runs (columns variant = method, seed, run_id, optionally state): one row per
    method (see the module doc). Each run's epoch metrics are read once; metric: as in compare_methods."""
    if runs.empty:
        return pd.DataFrame(columns=_TABLE_COLUMNS)
    per_seed = seed_values(store, runs, metric)
    base = _method_rows(store, runs, per_seed)
    gains = pd.DataFrame([_gain(per_seed, m) for m in base["method"]])
    table = pd.concat([base, gains], axis=1)
    lower_better = (table["metric"] == "val_loss").any()
    table["rank"] = table["best_mean"].rank(ascending=bool(lower_better), method="min").astype("Int64")
    return table[_TABLE_COLUMNS]


def table_text(table: pd.DataFrame) -> str:
    """The leaderboard as plain text (the CLI's output), best rank first."""
    cols = ["rank", "method", "n_seeds", "metric", "best", "final", "gain", "wall_s"]
    shown = table.sort_values("rank", na_position="last")[cols].rename(
        columns={"gain": "gain vs ce [95% CI]", "wall_s": "s/run"}
    )
    shown["s/run"] = shown["s/run"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.2f}")
    return shown.to_string(index=False)


__all__ = [
    "BUDGET_FIELDS",
    "LeaderboardResult",
    "compare_methods",
    "layer_defaults",
    "leaderboard_status",
    "queue_leaderboard",
    "stored_leaderboard",
    "leaderboard_configs",
    "leaderboard_table",
    "method_list",
    "seed_values",
    "t_interval",
    "table_text",
]
