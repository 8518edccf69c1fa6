"""The survey's first study as one experiment: the floor (the student alone), a temperature sweep at
a fixed λ, then a λ sweep at the temperature that won, all on the pair's recipe budget over seeds.

    report = run_plan(PlanSpec(pair="digits", seeds=(0, 1, 2)))
    report["chosen"]["temperature"]["value"], report["chosen"]["lam"]["value"]
    report["table"]       # one row per variant: best/final mean ± std, score interval, gain over the floor

Every run uses the pair's recipe (kdcore.jobs.recipes) with `budget` on top, so the floor, the T
sweep and the λ sweep share the same budget; the T sweep runs at `lam` (None: the recipe's λ, else
0.9). The winner of a sweep follows `rule` (sweeps.SelectionRule: by default the mean over seeds of
the best-epoch validation metric, ties to the lower value). A λ equal to the T sweep's λ reuses the
winning temperature's runs (the same config and seeds). Bad input (a sweep with one value, a λ
outside [0, 1], a pair without a student alone for the floor, ...) is refused before anything runs.
The runs and the report are kept in the run store (kdcore.jobs.experiment_store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from kdcore.jobs.config import ALIASES, JobConfig
from kdcore.jobs.experiment_stats import curves, lower_is_better, seed_values, variant_stats
from kdcore.jobs.experiment_store import JsonSpec, create_experiment, run_members, save_report
from kdcore.jobs.leaderboard import BUDGET_FIELDS
from kdcore.jobs.recipes import pair_recipe, student_alone, with_recipe
from kdcore.jobs.store import RunStore
from kdcore.jobs.sweeps import SelectionRule, lam_value, seed_list, sweep_values
from kdcore.validation import InvalidParameterError

FLOOR = "floor (student alone)"
DEFAULT_LAM = 0.9  # the T sweep's λ when the recipe names none


@dataclass(frozen=True)
class PlanSpec(JsonSpec):
    """What the plan sweeps; every value editable."""

    pair: str  # a registered pair name (or module:factory)
    seeds: tuple[int, ...] = (0, 1, 2)
    temperatures: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)  # the T sweep (≥ 2 values, each > 0)
    lams: tuple[float, ...] = (0.1, 0.5, 0.9)  # the λ sweep at the winning T (≥ 2 values in [0, 1])
    lam: float | None = None  # λ of the T sweep (None: the recipe's, else 0.9)
    rule: SelectionRule = field(default_factory=SelectionRule)
    budget: Mapping[str, Any] = field(default_factory=dict)  # budget fields on top of the recipe

    def checked(self) -> PlanSpec:
        """The spec with its lists normalised; InvalidParameterError (with the fix) for bad input."""
        if not isinstance(self.rule, SelectionRule):
            raise InvalidParameterError(f"The plan's 'rule' must be a SelectionRule. Got {type(self.rule).__name__}.")
        return replace(
            self,
            seeds=tuple(seed_list(self.seeds, what="the plan")),
            temperatures=tuple(sweep_values(self.temperatures, name="temperature", low=0, high=1e6, low_open=True)),
            lams=tuple(sweep_values(self.lams, name="λ", low=0, high=1, low_open=False)),
            lam=None if self.lam is None else lam_value(self.lam, what="The T sweep's λ (--lam)"),
            budget=budget_fields(self.budget),
        )


def budget_fields(budget: Mapping[str, Any] | None) -> dict:
    """Budget overrides (JobConfig fields of leaderboard.BUDGET_FIELDS); other keys are refused."""
    budget = dict(budget or {})
    other = sorted(set(budget) - set(BUDGET_FIELDS))
    if other:
        raise InvalidParameterError(
            f"An experiment's budget sets only {', '.join(BUDGET_FIELDS)}. Got {other}; drop those keys "
            f"(T and λ are the sweeps', the rest the recipe's)."
        )
    return {k: v for k, v in budget.items() if v is not None}


def recipe_base(pair: str, budget: Mapping[str, Any], objective: str | None = None) -> JobConfig:
    """The pair's recipe (its objective unless `objective` is given) with the budget on top."""
    recipe = pair_recipe(pair)
    fields = {"pair": pair, **dict(budget)}
    if objective is not None:
        fields["objective"] = objective
    elif recipe is not None:
        fields["objective"] = recipe.objective
    cfg, _ = with_recipe(JobConfig(**fields), recipe, set(fields))
    return cfg.validate()


def check_floor(base: JobConfig, pair: Any) -> None:
    """Refuse, before anything runs, a pair whose student cannot be trained alone (no labels, no data)
    and an objective that does not fit the pair, with the fix."""
    from kdcore.jobs.prepare import prepare_run

    ds = getattr(pair, "dataset", None)
    if ds is None or ds.task == "encoder":
        why = "it has no dataset" if ds is None else "its data has no labels (an encoder pair)"
        raise InvalidParameterError(
            f"The pair {base.pair!r} has no student alone for the floor: {why}, so the student cannot be "
            f"trained without the teacher. Use a classifier or language-model pair (e.g. digits, shapes, tinylang)."
        )
    for cfg in (student_alone(base), base):
        try:
            prepare_run(cfg, pair)
        except ValueError as exc:
            raise InvalidParameterError(f"The experiment cannot run on pair {base.pair!r}: {exc}") from None


def check_sweepable(base: JobConfig) -> None:
    from kdcore.methods import all_methods

    obj = ALIASES.get(base.objective, base.objective)
    both = [m.name for m in all_methods() if m.takes("temperature") and m.takes("lam")]
    if obj not in both:
        raise InvalidParameterError(
            f"This experiment sweeps T and λ, so its objective must take both ({', '.join(both)}). The pair "
            f"{base.pair!r}'s recipe uses {base.objective!r}; pick a pair whose recipe uses one of those "
            f"(digits, shapes)."
        )


@dataclass
class _Plan:
    """A plan being run: where its runs go and what they gave so far."""

    spec: PlanSpec
    base: JobConfig
    pair: Any
    store: RunStore
    eid: str
    callback: Callable[[dict], object] | None
    cancel: Any
    rows: list[dict] = field(default_factory=list)  # variant, seed, run_id, state
    phases: dict[str, str] = field(default_factory=dict)  # variant -> "floor" | "temperature" | "lam"
    settings: dict[str, dict] = field(default_factory=dict)  # variant -> {"temperature", "lam"}

    def run(self, phase: str, variant: str, cfg: JobConfig) -> bool:
        """Run one variant over the seeds; False when a run was cancelled (the plan stops)."""
        self.phases[variant] = phase
        self.settings[variant] = {"temperature": cfg.temperature, "lam": cfg.lam}
        seeded = [
            (variant, replace(cfg, seed=s, name=f"{variant} seed={s} (plan)"), self.pair) for s in self.spec.seeds
        ]
        return run_members(self.store, self.eid, seeded, self.rows, callback=self.callback, cancel=self.cancel)

    def reuse(self, variant: str, source: str, lam: float) -> None:
        """The λ sweep's value equal to the T sweep's λ: the winning T's runs, under the λ variant's name."""
        self.phases[variant] = "lam"
        self.settings[variant] = dict(self.settings[source], lam=lam)
        self.rows += [dict(r, variant=variant) for r in self.rows if r["variant"] == source]

    def runs(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["variant", "seed", "run_id", "state"])

    def winner(self, phase: str) -> tuple[float, str]:
        """(the winning value of a sweep, its variant) by the rule."""
        per_seed = seed_values(self.store, self.runs())
        key = "temperature" if phase == "temperature" else "lam"
        scores = {
            float(self.settings[v][key]): per_seed.loc[per_seed["variant"] == v, self.spec.rule.metric].tolist()
            for v, p in self.phases.items()
            if p == phase
        }
        value = self.spec.rule.choose(scores, lower_better=lower_is_better(per_seed))
        variant = next(v for v, p in self.phases.items() if p == phase and self.settings[v][key] == value)
        return value, variant


def _t_name(t: float) -> str:
    return f"T={t:g}"


def _lam_name(lam: float, t: float) -> str:
    return f"λ={lam:g} at T={t:g}"


def planned_runs(spec: PlanSpec) -> int:
    """Runs the plan trains (a λ equal to the T sweep's λ reuses runs)."""
    reused = 1 if spec.lam is not None and spec.lam in spec.lams else 0
    return len(spec.seeds) * (1 + len(spec.temperatures) + len(spec.lams) - reused)


def prepare_plan(spec: PlanSpec) -> tuple[PlanSpec, JobConfig, Any]:
    """(checked spec with its T-sweep λ filled in, the recipe config, the loaded pair): everything the
    plan needs, checked before anything runs."""
    from kdcore.jobs.resolve import resolve_pair

    spec = spec.checked()
    base = recipe_base(spec.pair, spec.budget)
    check_sweepable(base)
    lam = spec.lam if spec.lam is not None else (base.lam if base.lam is not None else DEFAULT_LAM)
    spec = replace(spec, lam=lam_value(lam, what="The T sweep's λ"))
    try:
        pair = resolve_pair(spec.pair)
    except ValueError as exc:
        raise InvalidParameterError(str(exc)) from None
    check_floor(base, pair)
    return spec, base, pair


def run_plan(
    spec: PlanSpec,
    *,
    store: RunStore | None = None,
    callback: Callable[[dict], object] | None = None,
    cancel: Any = None,
) -> dict:
    """Run the plan in this process (floor, T sweep, λ sweep at the winning T); returns the report (also
    kept in the store: experiment_store.load_report(store, report["experiment_id"]))."""
    spec, base, pair = prepare_plan(spec)
    store = store if store is not None else RunStore()
    eid = create_experiment(store, "plan", spec.pair, spec=spec.to_dict(), planned=planned_runs(spec))
    plan, t0 = _Plan(spec, base, pair, store, eid, callback, cancel), time.perf_counter()
    ok = plan.run("floor", FLOOR, student_alone(base))
    for t in spec.temperatures if ok else ():
        ok = ok and plan.run("temperature", _t_name(t), replace(base, temperature=t, lam=spec.lam))
    if ok:
        ok = _lam_sweep(plan, base, plan.winner("temperature")[0])
    report = plan_report(plan, time.perf_counter() - t0, complete=ok)
    save_report(store, eid, report)
    return report


def _lam_sweep(plan: _Plan, base: JobConfig, t: float) -> bool:
    """The λ sweep at the winning T (a λ equal to the T sweep's reuses its runs); False when cancelled."""
    ok = True
    for lam in plan.spec.lams:
        if lam == plan.spec.lam:
            plan.reuse(_lam_name(lam, t), _t_name(t), lam)
        else:
            ok = ok and plan.run("lam", _lam_name(lam, t), replace(base, temperature=t, lam=lam))
    return ok


def plan_report(plan: _Plan, wall_s: float, *, complete: bool) -> dict:
    """The plan's report: spec, recipe budget, table, curves, the chosen T and λ with their intervals."""
    runs = plan.runs()
    per_seed = seed_values(plan.store, runs)
    metric = str(per_seed["metric"].iloc[0]) if len(per_seed) else "val_acc"
    order = list(plan.phases)
    rows = variant_stats(per_seed, order, floor=FLOOR, rule_metric=plan.spec.rule.metric)
    for r in rows:
        r.update(phase=plan.phases[r["variant"]], **plan.settings[r["variant"]])
    by_name = {r["variant"]: r for r in rows}
    chosen = {}
    for phase, key in (("temperature", "temperature"), ("lam", "lam")):
        if complete and any(p == phase for p in plan.phases.values()):
            value, variant = plan.winner(phase)
            chosen[key] = {"value": value, "variant": variant, **_interval(by_name[variant])}
    return {
        "kind": "plan",
        "experiment_id": plan.eid,
        "pair": plan.spec.pair,
        "state": "completed" if complete and (runs["state"] == "completed").all() else "incomplete",
        "spec": plan.spec.to_dict(),
        "budget": {k: getattr(plan.base, k) for k in (*BUDGET_FIELDS, "objective", "temperature", "lam")},
        "metric": metric,
        "lower_better": lower_is_better(per_seed) if len(per_seed) else False,
        "table": rows,
        "curves": curves(plan.store, runs, metric),
        "chosen": chosen,
        "runs": runs.to_dict(orient="records"),
        "wall_s": wall_s,
    }


def _interval(row: dict) -> dict:
    keys = ("score_mean", "score_low", "score_high", "score", "gain_mean", "gain_low", "gain_high", "gain")
    return {k: row[k] for k in keys}


def table_text(report: dict) -> str:
    """The report's table as plain text (the CLI's output) and the chosen T and λ."""
    cols = ["phase", "variant", "n_seeds", "best", "final", "gain", "wall_s"]
    df = pd.DataFrame(report["table"])[cols].rename(columns={"gain": "gain vs floor [95% CI]", "wall_s": "s/run"})
    df["s/run"] = df["s/run"].map(lambda v: "n/a" if v is None or pd.isna(v) else f"{v:.2f}")
    lines = [f"metric: {report['metric']} (best epoch unless the rule says final)", df.to_string(index=False)]
    for key, label in (("temperature", "T"), ("lam", "λ")):
        c = report["chosen"].get(key)
        if c:
            lines.append(f"chosen {label} = {c['value']:g}: {report['metric']} {c['score']}, gain {c['gain']}")
    lines.append(f"experiment {report['experiment_id']} · {report['state']} · {report['wall_s']:.1f} s in all")
    return "\n".join(lines)
