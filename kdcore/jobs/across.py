"""Across architectures: one method on every pair it fits, each against its own student alone on the same
budget, in one table (gain mean ± std over seeds, with its 95 % t-interval).

    report = run_across(AcrossSpec(method="kd", seeds=(0, 1, 2)))
    report["table"]     # pair, n_seeds, alone, method, gain (mean ± std), gain_low/high
    report["skipped"]   # pairs the method does not fit, with the reason

`recipe` None: each pair trains under its own recipe's budget (epochs, training size, lr, schedule;
T and λ too when the recipe's objective is the method); a pair name: that pair's recipe for every
pair (the same settings everywhere). `budget` goes on top either way. A method that fits none of the
pairs, or an empty list of pairs, is refused before anything runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from kdcore.jobs.config import JobConfig
from kdcore.jobs.experiment import budget_fields
from kdcore.jobs.experiment_stats import seed_values, variant_stats
from kdcore.jobs.experiment_store import JsonSpec, create_experiment, run_members, save_report
from kdcore.jobs.recipes import pair_recipe, student_alone, with_recipe
from kdcore.jobs.store import RunStore
from kdcore.jobs.sweeps import mean_std_text, seed_list
from kdcore.validation import InvalidParameterError


@dataclass(frozen=True)
class AcrossSpec(JsonSpec):
    method: str = "kd"
    pairs: Sequence[str] | None = None  # None: every registered pair
    seeds: tuple[int, ...] = (0, 1, 2)
    recipe: str | None = None  # None: each pair's own recipe; a pair name: its recipe everywhere
    budget: Mapping[str, Any] = field(default_factory=dict)


def across_config(spec: AcrossSpec, pair: str, method: str) -> JobConfig:
    """The method's job on `pair`: the chosen recipe (see the module doc) with the budget on top."""
    recipe = pair_recipe(spec.recipe if spec.recipe is not None else pair)
    user = {"pair", "objective", *spec.budget}
    cfg, _ = with_recipe(JobConfig(pair=pair, objective=method, **dict(spec.budget)), recipe, user)
    return cfg.validate()


def _fits(cfg: JobConfig) -> tuple[Any, str | None]:
    """(the loaded pair, None) when the method and the student alone fit it, else (None, why)."""
    from kdcore.jobs.experiment import check_floor
    from kdcore.jobs.resolve import resolve_pair

    try:
        pair = resolve_pair(cfg.pair)
        check_floor(cfg, pair)
    except ValueError as exc:
        return None, str(exc)
    return pair, None


def prepare_across(spec: AcrossSpec) -> tuple[AcrossSpec, list[tuple[JobConfig, Any]], dict[str, str]]:
    """(checked spec, [(config, pair)] for the pairs that fit, {pair: why not} for the others)."""
    from kdcore.methods import canonical_name, unknown_method_message
    from kdcore.pair_registry import registered_pairs

    method = canonical_name(spec.method)
    if method is None:
        raise InvalidParameterError(unknown_method_message(spec.method) + " Fix --method.")
    pairs = list(registered_pairs()) if spec.pairs is None else [p.strip() for p in spec.pairs if p.strip()]
    if not pairs:
        raise InvalidParameterError("The across study needs at least one pair. Got none; name pairs with --pairs a,b.")
    if spec.recipe is not None and pair_recipe(spec.recipe) is None:
        raise InvalidParameterError(f"The pair {spec.recipe!r} has no recipe to use everywhere. Name a pair with one.")
    spec = replace(spec, method=method, pairs=pairs, seeds=tuple(seed_list(spec.seeds, what="the across study")))
    spec = replace(spec, budget=budget_fields(spec.budget))
    fit, skipped = [], {}
    for name in pairs:
        cfg = across_config(spec, name, method)
        loaded, why = _fits(cfg)
        if why is None:
            fit.append((cfg, loaded))
        else:
            skipped[name] = why
    if not fit:
        raise InvalidParameterError(
            f"The method {method!r} fits none of the pairs {pairs}: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            + " Pick another method (`python -m kdcore methods`)."
        )
    return spec, fit, skipped


def run_across(
    spec: AcrossSpec,
    *,
    store: RunStore | None = None,
    callback: Callable[[dict], object] | None = None,
    cancel: Any = None,
) -> dict:
    """Run the method and the student alone on every pair that fits, over the seeds; the report."""
    spec, fit, skipped = prepare_across(spec)
    store = store if store is not None else RunStore()
    planned = 2 * len(fit) * len(spec.seeds)
    eid = create_experiment(store, "across", None, spec=spec.to_dict(), planned=planned)
    rows: list[dict] = []
    t0 = time.perf_counter()
    jobs = [(v, c, p) for cfg, p in fit for v, c in ((f"{cfg.pair} alone", student_alone(cfg)), (cfg.pair, cfg))]
    seeded = [(v, replace(c, seed=s, name=f"{v} seed={s} (across)"), p) for v, c, p in jobs for s in spec.seeds]
    run_members(store, eid, seeded, rows, callback=callback, cancel=cancel)
    report = across_report(store, eid, spec, [c for c, _ in fit], skipped, pd.DataFrame(rows))
    report["wall_s"] = time.perf_counter() - t0
    save_report(store, eid, report)
    return report


def across_report(
    store: RunStore, eid: str, spec: AcrossSpec, configs: list[JobConfig], skipped: dict, runs: pd.DataFrame
) -> dict:
    per_seed = seed_values(store, runs)
    table = []
    for cfg in configs:
        floor = f"{cfg.pair} alone"
        alone, row = variant_stats(per_seed, [floor, cfg.pair], floor=floor, rule_metric="best")
        metric = per_seed.loc[per_seed["variant"] == cfg.pair, "metric"]
        table.append(
            {
                "pair": cfg.pair,
                "metric": str(metric.iloc[0]) if len(metric) else None,
                "n_seeds": row["n_seeds"],
                "alone": alone["best"],
                "method": row["best"],
                "gain_mean": row["gain_mean"],
                "gain_std": row["gain_std"],
                "gain_low": row["gain_low"],
                "gain_high": row["gain_high"],
                "gain": mean_std_text(row["gain_mean"], row["gain_std"], signed=True),
                "settings": f"epochs {cfg.epochs}, train_size {cfg.train_size}, lr {cfg.lr:g}, T {cfg.temperature}, "
                f"λ {cfg.lam}",
            }
        )
    complete = len(runs) and (runs["state"] == "completed").all()
    return {
        "kind": "across",
        "experiment_id": eid,
        "pair": None,
        "state": "completed" if complete else "incomplete",
        "spec": spec.to_dict(),
        "table": table,
        "skipped": skipped,
        "runs": runs.to_dict(orient="records"),
    }


def across_text(report: dict) -> str:
    cols = ["pair", "metric", "n_seeds", "alone", "method", "gain"]
    df = pd.DataFrame(report["table"])[cols].rename(
        columns={"method": report["spec"]["method"], "gain": "gain (mean ± std)"}
    )
    lines = [df.to_string(index=False)]
    lines += [f"skipped {k}: {v}" for k, v in report["skipped"].items()]
    return "\n".join(lines)
