"""The method leaderboard: several methods on one pair under the pair's recipe budget, over seeds.

    res = compare_methods("digits", ["kd", "dkd", "cakd"], seeds=[0, 1, 2])
    res.table  # method, n_seeds, metric, best/final mean ± std, gain over the student alone, rank

Every method gets the same budget (epochs, training size, lr, schedule, batch size, seed): the
pair's recipe (kdcore.jobs.recipes) with `base`'s budget fields on top; each method keeps its own
defaults for its parameters (the recipe's T and λ go only to the recipe's own objective, as
`with_recipe` does). The student alone (`ce`) is always run as the floor. Methods that do not fit
the pair are refused before anything runs. The runs are recorded as one protocol in the run store.

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
from kdcore.jobs.protocols import protocol_table
from kdcore.jobs.recipes import pair_recipe, student_alone, with_recipe
from kdcore.jobs.store import RunStore
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
    pair: str, methods: list[str], seeds: list[int], base: JobConfig | Mapping[str, Any] | None = None
) -> list[tuple[str, JobConfig]]:
    """The (method, config) list, seeds expanded: every method on the same budget (see the module doc)."""
    changes = _budget_changes(base)
    recipe = pair_recipe(pair)
    user = {"pair", "objective", "seed", *changes}
    out = []
    for method in methods:
        cfg, _ = with_recipe(JobConfig(pair=pair, objective=method, **changes), recipe, user)
        cfg = student_alone(cfg) if method == FLOOR else cfg
        for s in seeds:
            out.append((method, replace(cfg, seed=int(s), name=f"{method} seed={s} (leaderboard)").validate()))
    return out


def _check_fits(plan: list[tuple[str, JobConfig]], pair: Any) -> None:
    """Refuses, before anything runs, every method that does not fit the pair (the method table's reason)."""
    from kdcore.jobs.chain import is_chain, plan_chain
    from kdcore.jobs.prepare import prepare_run

    problems = []
    for method, cfg in {m: c for m, c in plan}.items():
        try:
            plan_chain(cfg, pair) if is_chain(method) else prepare_run(cfg, pair)
        except ValueError as exc:
            problems.append(f"{method}: {exc}")
    if problems:
        raise InvalidParameterError(
            f"Some methods cannot run on the pair {plan[0][1].pair!r}:\n"
            + "\n".join(problems)
            + "\nDrop them from 'methods' (`python -m kdcore methods` lists the tasks each fits)."
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
    executor: Any = None,
) -> LeaderboardResult:
    """Run every method (and the student alone) on `pair` over `seeds`, in this process, one after
    another; returns the leaderboard. base: budget fields on top of the recipe (a JobConfig's
    non-default budget fields, or a mapping {field: value}); callback: gets a "leaderboard_run"
    event before each run and every run's own events. executor: an Executor (kdcore.jobs.executors)
    to run them on instead, several at once (a chain method's run is its whole chain); the callback
    then gets a "run_done" event as each run ends."""
    from kdcore.jobs.chain import is_chain, run_chain
    from kdcore.jobs.resolve import resolve_pair
    from kdcore.jobs.runner import RunResult, run_job

    names, seed_list = method_list(methods), _seed_list(seeds)
    plan = leaderboard_configs(pair, names, seed_list, base)
    loaded = resolve_pair(pair)
    _check_fits(plan, loaded)
    store = store if store is not None else RunStore()
    budget = {k: getattr(plan[0][1], k) for k in BUDGET_FIELDS}
    record = {"kind": "leaderboard", "methods": names, "seeds": seed_list, "budget": budget, "baseline": True}
    pid = store.create_protocol(pair=pair, objective="leaderboard", plan=record)
    if executor is not None:
        from kdcore.jobs.executors import run_plan

        runs = pd.DataFrame(run_plan(executor, plan, store=store, protocol_id=pid, progress=callback))
        return LeaderboardResult(leaderboard_table(store, runs), runs, pid, budget)
    rows = []
    for i, (method, cfg) in enumerate(plan):
        if callback is not None:
            callback({"event": "leaderboard_run", "index": i, "of": len(plan), "method": method, "seed": cfg.seed})
        if is_chain(cfg.objective):  # takd, dgkd, ban: the whole chain, scored by its final student
            chain = run_chain(cfg, store=store, callback=callback, pair=loaded)
            res = RunResult(chain.chain_id, chain.state, chain.metrics, chain.error)
        else:
            res = run_job(cfg, store=store, callback=callback, pair=loaded)
        if res.run_id is not None:
            store.add_protocol_run(pid, res.run_id, variant=method, seed=cfg.seed)
        rows.append({"variant": method, "seed": cfg.seed, "run_id": res.run_id, "state": res.state})
    runs = pd.DataFrame(rows, columns=["variant", "seed", "run_id", "state"])
    return LeaderboardResult(leaderboard_table(store, runs), runs, pid, budget)


def seed_values(store: RunStore, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with a metric: variant, seed, metric, best (best epoch's value), final, wall_s
    (seconds of training: steps / steps per second, NaN when not recorded)."""
    rows = []
    for r in runs.dropna(subset=["run_id"]).itertuples():
        run = store.get_run(r.run_id)
        summary = run["summary"] or {}
        metric = summary.get("metric", "val_acc")
        wall = summary["steps"] / summary["steps_per_s"] if summary.get("steps_per_s") else float("nan")
        ep = store.metrics(r.run_id, "epoch")
        ep = ep[ep["epoch"] >= 1] if "epoch" in ep else ep  # epoch 0: the student before training
        vals = ep[metric].dropna().to_numpy() if metric in ep else np.array([])
        if vals.size:
            best = vals.min() if metric == "val_loss" else vals.max()
            rows.append({"variant": r.variant, "seed": r.seed, "metric": metric, "best": best, "final": vals[-1]})
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


def leaderboard_table(store: RunStore, runs: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard of runs (columns variant = method, seed, run_id): one row per method (see the module doc)."""
    base = protocol_table(store, runs[["variant", "seed", "run_id"]])
    if base.empty:
        return pd.DataFrame(columns=_TABLE_COLUMNS)
    per_seed = seed_values(store, runs)
    gains = pd.DataFrame([_gain(per_seed, m) for m in base["variant"]])
    table = pd.concat([base.reset_index(drop=True), gains], axis=1).rename(columns={"variant": "method"})
    lower_better = (table["metric"] == "val_loss").any()
    table["wall_s"] = [per_seed.loc[per_seed["variant"] == m, "wall_s"].mean() for m in table["method"]]
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
    "leaderboard_configs",
    "leaderboard_table",
    "method_list",
    "seed_values",
    "t_interval",
    "table_text",
]
