"""`python -m kdcore experiment ...`: the plan, the capacity-gap study, across architectures, the
reproducibility report, and the experiments kept in the run store.

    python -m kdcore experiment plan --pair digits --seeds 0,1,2 [--temperatures 1,2,5,10] [--lams 0.1,0.5,0.9]
    python -m kdcore experiment capacity --pair digits --seeds 0,1,2 --temperatures 1,4,10
    python -m kdcore experiment across --method kd --seeds 0,1,2 [--pairs digits,shapes]
    python -m kdcore experiment repro --config bench/repro_digits.yaml --seeds 0,1 --threads 1,2
    python -m kdcore experiment list | show ID [--json]

The HTML form of a report (tables and figures) is written by the app's side, which draws with plotly:
`python -m app.experiment_report ID --out report.html`, or the Experiments page's download button.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kdcore.cli_values import BUDGET_FLAGS, add_budget_flags, budget_from_args, number_list

if TYPE_CHECKING:
    from kdcore.jobs.store import RunStore


def _store() -> RunStore:
    """The run store the experiment writes to ($KDWB_HOME), in the workspace $KDWB_WORKSPACE names:
    the app sets it when a workshop participant starts an experiment (kdcore/jobs/workspace.py)."""
    from kdcore.jobs.store import RunStore
    from kdcore.jobs.workspace import WORKSPACE_ENV

    return RunStore(workspace=os.environ.get(WORKSPACE_ENV) or None)


def _progress(ev: dict) -> None:
    if ev.get("event") == "experiment_run":
        print(f"[{ev['index'] + 1}] {ev['variant']} seed={ev['seed']}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace, run: Callable[..., dict], spec: Any, text: Callable[[dict], str]) -> int:
    """Run the experiment `spec` into the store (progress on stderr unless --json), print its report as
    JSON or as `text(report)` with the HTML report's command; 0 if it completed, else 1."""
    report = run(spec, store=_store(), callback=None if args.json else _progress)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(text(report))
        print(f"HTML report: python -m app.experiment_report {report['experiment_id']} --out report.html")
    return 0 if report.get("state") == "completed" else 1


def cmd_plan(args: argparse.Namespace) -> int:
    from kdcore.jobs.experiment import PlanSpec, run_plan, table_text
    from kdcore.jobs.sweeps import SelectionRule

    spec = PlanSpec(
        pair=args.pair,
        seeds=tuple(number_list("--seeds", args.seeds, int)),
        temperatures=tuple(number_list("--temperatures", args.temperatures, float)),
        lams=tuple(number_list("--lams", args.lams, float)),
        lam=args.lam,
        rule=SelectionRule(metric=args.select, ties=args.ties, tolerance=args.tolerance),
        budget=budget_from_args(args, BUDGET_FLAGS),
    )
    return _run(args, run_plan, spec, table_text)


def cmd_capacity(args: argparse.Namespace) -> int:
    from kdcore.jobs.capacity_study import CapacitySpec, grid_text, run_capacity

    spec = CapacitySpec(
        pair=args.pair,
        seeds=tuple(number_list("--seeds", args.seeds, int)),
        temperatures=tuple(number_list("--temperatures", args.temperatures, float)),
        lam=args.lam,
        budget=budget_from_args(args, BUDGET_FLAGS),
    )
    return _run(args, run_capacity, spec, grid_text)


def cmd_across(args: argparse.Namespace) -> int:
    from kdcore.jobs.across import AcrossSpec, across_text, run_across

    pairs = [p for p in (args.pairs or "").split(",") if p.strip()] or None
    spec = AcrossSpec(
        method=args.method,
        pairs=pairs,
        seeds=tuple(number_list("--seeds", args.seeds, int)),
        recipe=args.recipe,
        budget=budget_from_args(args, BUDGET_FLAGS),
    )
    return _run(args, run_across, spec, across_text)


def cmd_repro(args: argparse.Namespace) -> int:
    from kdcore.jobs.repro import ReproSpec, load_config_file, repro_text, run_repro

    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip()) if args.devices else None
    spec = ReproSpec(
        load_config_file(args.config),
        seeds=tuple(number_list("--seeds", args.seeds, int)),
        threads=tuple(number_list("--threads", args.threads, int)),
        devices=devices,
    )
    return _run(args, run_repro, spec, repro_text)


def report_text(report: dict) -> str:
    """Any experiment's report as the text its command printed."""
    from kdcore.jobs.across import across_text
    from kdcore.jobs.capacity_study import grid_text
    from kdcore.jobs.experiment import table_text
    from kdcore.jobs.repro import repro_text

    texts = {"plan": table_text, "capacity": grid_text, "across": across_text, "repro": repro_text}
    return texts[report["kind"]](report)


def cmd_list(args: argparse.Namespace) -> int:
    import pandas as pd

    from kdcore.jobs.experiment_store import list_experiments

    rows = list_experiments(_store())
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    elif not rows:
        print("No experiments yet: run `python -m kdcore experiment plan --pair digits`.")
    else:
        df = pd.DataFrame(rows)[["id", "kind", "pair", "done", "planned", "has_report"]]
        print(df.to_string(index=False))
    return 0


def _stored(experiment_id: str) -> dict:
    from kdcore.jobs.experiment_store import load_report

    store = _store()
    store.get_protocol(experiment_id)  # StoreError: no such experiment
    report = load_report(store, experiment_id)
    if report is None:
        raise ValueError(f"Experiment {experiment_id} has no report yet (it is still running, or it stopped).")
    return report


def cmd_show(args: argparse.Namespace) -> int:
    report = _stored(args.id)
    print(json.dumps(report, indent=1, default=str) if args.json else report_text(report))
    return 0


def _common(p: argparse.ArgumentParser, *, budget: bool = True) -> None:
    if budget:
        add_budget_flags(p, BUDGET_FLAGS, help="budget override on top of the recipe")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def add_experiment_parser(sub: Any) -> None:
    """The `experiment` command and its actions (called by kdcore.cli.build_parser)."""
    e = sub.add_parser("experiment", help="the survey's experiments: plan, capacity gap, across pairs, reproducibility")
    acts = e.add_subparsers(dest="action", required=True)
    p = acts.add_parser("plan", help="floor, T sweep at fixed λ, λ sweep at the winning T; one report")
    p.add_argument("--pair", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--temperatures", default="1,2,5,10", help="the T sweep (at least two values)")
    p.add_argument("--lams", default="0.1,0.5,0.9", help="the λ sweep at the winning T (values in [0, 1])")
    p.add_argument("--lam", type=float, help="λ of the T sweep (default: the recipe's, else 0.9)")
    p.add_argument("--select", default="best", choices=["best", "final"], help="rule: best-epoch or final metric")
    p.add_argument("--ties", default="lower", choices=["lower", "higher"], help="rule: a tie goes to this value")
    p.add_argument("--tolerance", type=float, default=0.0, help="rule: means within this are a tie")
    _common(p)
    p.set_defaults(func=cmd_plan)
    c = acts.add_parser("capacity", help="gain over the same-size student alone: ladder size × T")
    c.add_argument("--pair", required=True)
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--temperatures", default="1,4,10")
    c.add_argument("--lam", type=float, help="KD's λ (default: the recipe's)")
    _common(c)
    c.set_defaults(func=cmd_capacity)
    a = acts.add_parser("across", help="one method on every pair it fits: gain over the student alone")
    a.add_argument("--method", default="kd")
    a.add_argument("--pairs", help="comma-separated pairs (default: every registered pair)")
    a.add_argument("--seeds", default="0,1,2")
    a.add_argument("--recipe", help="use this pair's recipe on every pair (default: each pair's own)")
    _common(a)
    a.set_defaults(func=cmd_across)
    r = acts.add_parser("repro", help="re-run a config over seeds and thread counts: bit-identical metrics, spreads")
    r.add_argument("--config", required=True, help="YAML/JSON file of JobConfig fields")
    r.add_argument("--seeds", default="0,1", help="at least two seeds")
    r.add_argument("--threads", default="1,2", help="torch thread counts")
    r.add_argument("--devices", help="cpu,cuda (default: cpu, and cuda when present)")
    _common(r, budget=False)
    r.set_defaults(func=cmd_repro)
    ls = acts.add_parser("list", help="the experiments in the run store")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    s = acts.add_parser("show", help="an experiment's report")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
