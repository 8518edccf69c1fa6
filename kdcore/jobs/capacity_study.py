"""The capacity-gap study: over the pair's student ladder (every rung, then the student itself), a grid
of student size × temperature with the gain of KD over the same-size student alone, over seeds.

    report = run_capacity(CapacitySpec(pair="digits", temperatures=(1.0, 4.0), seeds=(0, 1)))
    report["grid"]   # one row per (size, T): parameters, gain mean, 95 % t-interval, n_seeds

Mirzadeh et al. 2020 (teacher assistants) and Cho & Hariharan 2019 observe that the gain of KD can
shrink, or turn into a loss, as the student gets much smaller than the teacher; this grid measures it
on the pair. Each size trains under the pair's recipe budget (`budget` on top), the student alone at
each size being the floor of that size's gains (paired by seed). The ladder must shrink (every rung
smaller than the one before and than the teacher, the student smallest), checked before anything runs.
Each size's runs use a Pair whose student is that rung (the run's config names the pair; re-running
one from the store trains the pair's own student).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from kdcore.jobs.experiment import budget_fields, check_floor, check_sweepable, recipe_base
from kdcore.jobs.experiment_stats import lower_is_better, seed_values, variant_stats
from kdcore.jobs.experiment_store import JsonSpec, create_experiment, run_members, save_report
from kdcore.jobs.recipes import student_alone
from kdcore.jobs.store import RunStore
from kdcore.jobs.sweeps import lam_value, seed_list, sweep_values
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError


@dataclass(frozen=True)
class CapacitySpec(JsonSpec):
    """The grid: every ladder size (and the student) × `temperatures`, over `seeds`."""

    pair: str
    seeds: tuple[int, ...] = (0, 1, 2)
    temperatures: tuple[float, ...] = (1.0, 4.0, 10.0)
    lam: float | None = None  # KD's λ (None: the recipe's)
    budget: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Size:
    """One student size of the study: its label, adapter and parameter count."""

    label: str
    adapter: Any
    parameters: int


def ladder_sizes(pair: Pair) -> list[Size]:
    """The ladder's rungs (largest first) then the student; refused when there is no ladder or the
    sizes do not shrink."""
    if not pair.ladder:
        raise InvalidParameterError(
            f"The pair {pair.name!r} has no student ladder, so there is only one student size. Use a pair "
            f"with a ladder (digits, shapes) or build the Pair with ladder=(adapters, largest first)."
        )
    sizes = [Size(f"rung {i + 1}", a, a.num_parameters()) for i, a in enumerate(pair.ladder)]
    sizes.append(Size("student", pair.student, pair.student.num_parameters()))
    bound = pair.teacher.num_parameters()
    for s in sizes:
        if s.parameters >= bound:
            chain = " → ".join(f"{x.label} {x.parameters:,}" for x in sizes)
            raise InvalidParameterError(
                f"The ladder of pair {pair.name!r} does not shrink: {s.label} has {s.parameters:,} parameters, "
                f"not fewer than the model before it ({bound:,}; teacher {pair.teacher.num_parameters():,}, "
                f"then {chain}). Order Pair.ladder from largest to smallest, each larger than the student."
            )
        bound = s.parameters
    return sizes


def _size_pair(pair: Pair, size: Size) -> Pair:
    if size.label == "student":
        return pair
    return Pair(f"{pair.name} · {size.label}", pair.teacher, size.adapter, dataset=pair.dataset)


def prepare_capacity(spec: CapacitySpec) -> tuple[CapacitySpec, Any, Pair, list[Size]]:
    from kdcore.jobs.resolve import resolve_pair

    spec = replace(
        spec,
        seeds=tuple(seed_list(spec.seeds, what="the capacity study")),
        temperatures=tuple(sweep_values(spec.temperatures, name="temperature", low=0, high=1e6, low_open=True)),
        budget=budget_fields(spec.budget),
    )
    base = recipe_base(spec.pair, spec.budget)
    check_sweepable(base)
    if spec.lam is not None:
        base = replace(base, lam=lam_value(spec.lam, what="The capacity study's λ (--lam)"))
    try:
        pair = resolve_pair(spec.pair)
    except ValueError as exc:
        raise InvalidParameterError(str(exc)) from None
    sizes = ladder_sizes(pair)
    check_floor(base, pair)
    return spec, base, pair, sizes


def run_capacity(
    spec: CapacitySpec,
    *,
    store: RunStore | None = None,
    callback: Callable[[dict], object] | None = None,
    cancel: Any = None,
) -> dict:
    """Run the grid in this process; returns the report (kept in the store too)."""
    spec, base, pair, sizes = prepare_capacity(spec)
    store = store if store is not None else RunStore()
    planned = len(sizes) * len(spec.seeds) * (1 + len(spec.temperatures))
    eid = create_experiment(store, "capacity", spec.pair, spec=spec.to_dict(), planned=planned)
    rows: list[dict] = []
    t0 = time.perf_counter()
    jobs = [
        (size, variant, replace(cfg, seed=s, name=f"{variant} seed={s} (capacity)"))
        for size in sizes
        for variant, cfg in [(f"{size.label} alone", student_alone(base))]
        + [(f"{size.label} T={t:g}", replace(base, temperature=t)) for t in spec.temperatures]
        for s in spec.seeds
    ]
    members = ((variant, cfg, _size_pair(pair, size)) for size, variant, cfg in jobs)
    run_members(store, eid, members, rows, callback=callback, cancel=cancel)
    report = capacity_report(store, eid, spec, sizes, pd.DataFrame(rows), time.perf_counter() - t0)
    save_report(store, eid, report)
    return report


def capacity_report(
    store: RunStore, eid: str, spec: CapacitySpec, sizes: list[Size], runs: pd.DataFrame, wall_s: float
) -> dict:
    """grid: one row per (size, T) with the gain over that size's student alone; sizes: label, parameters."""
    per_seed = seed_values(store, runs)
    grid = []
    for size in sizes:
        order = [f"{size.label} T={t:g}" for t in spec.temperatures]
        stats = variant_stats(
            per_seed, [f"{size.label} alone", *order], floor=f"{size.label} alone", rule_metric="best"
        )
        alone = stats[0]
        for t, row in zip(spec.temperatures, stats[1:]):
            grid.append(
                {"size": size.label, "parameters": size.parameters, "temperature": t, "alone": alone["best"], **row}
            )
    complete = len(runs) and (runs["state"] == "completed").all()
    return {
        "kind": "capacity",
        "experiment_id": eid,
        "pair": spec.pair,
        "state": "completed" if complete else "incomplete",
        "spec": spec.to_dict(),
        "metric": str(per_seed["metric"].iloc[0]) if len(per_seed) else "val_acc",
        "lower_better": lower_is_better(per_seed) if len(per_seed) else False,
        "sizes": [{"size": s.label, "parameters": s.parameters} for s in sizes],
        "grid": grid,
        "runs": runs.to_dict(orient="records"),
        "wall_s": wall_s,
    }


def grid_text(report: dict) -> str:
    """The grid as plain text: gain over the same-size student alone, rows sizes, columns T."""
    df = pd.DataFrame(report["grid"])
    df["size"] = df["size"] + " (" + df["parameters"].map(lambda p: f"{p:,}") + " params)"
    table = df.pivot(index="size", columns="temperature", values="gain")
    table = table.loc[list(dict.fromkeys(df["size"]))]
    table.columns = [f"T={t:g}" for t in table.columns]
    return f"gain in {report['metric']} over the same-size student alone [95% CI]\n" + table.to_string()
