"""Starting an experiment from the app: its inputs checked here (bad input is refused on the page,
before anything runs), then `python -m kdcore experiment <kind> ...` started in a process of its own
that records the experiment, its runs and its report in the run store. No Streamlit.

    argv = plan_argv(PlanSpec(pair="digits", seeds=(0, 1, 2)))
    proc = start(store, argv)        # the page lists experiments from the store and follows this one
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdcore.jobs.across import AcrossSpec, prepare_across
from kdcore.jobs.capacity_study import CapacitySpec, prepare_capacity
from kdcore.jobs.experiment import PlanSpec, prepare_plan
from kdcore.jobs.experiment_cli import BUDGET_FLAGS
from kdcore.jobs.repro import ReproSpec, check_repro
from kdcore.jobs.store import RunStore
from kdcore.jobs.workspace import WORKSPACE_ENV


def _csv(values: Any) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _budget_argv(budget: Mapping[str, Any]) -> list[str]:
    flags = {dest: flag for flag, dest, _ in BUDGET_FLAGS}
    return [x for k, v in budget.items() if v is not None for x in (flags[k], str(v))]


def plan_argv(spec: PlanSpec) -> list[str]:
    """The command's arguments for the plan, after checking it (InvalidParameterError with the fix)."""
    checked, _, _ = prepare_plan(spec)
    argv = ["plan", "--pair", checked.pair, "--seeds", _csv(checked.seeds)]
    argv += ["--temperatures", _csv(checked.temperatures), "--lams", _csv(checked.lams)]
    argv += ["--select", checked.rule.metric, "--ties", checked.rule.ties, "--tolerance", f"{checked.rule.tolerance:g}"]
    if spec.lam is not None:
        argv += ["--lam", f"{spec.lam:g}"]
    return argv + _budget_argv(checked.budget)


def capacity_argv(spec: CapacitySpec) -> list[str]:
    checked = prepare_capacity(spec)[0]
    argv = ["capacity", "--pair", checked.pair, "--seeds", _csv(checked.seeds)]
    argv += ["--temperatures", _csv(checked.temperatures)]
    if checked.lam is not None:
        argv += ["--lam", f"{checked.lam:g}"]
    return argv + _budget_argv(checked.budget)


def across_argv(spec: AcrossSpec) -> list[str]:
    checked = prepare_across(spec)[0]
    argv = [
        "across",
        "--method",
        checked.method,
        "--pairs",
        ",".join(checked.pairs or ()),
        "--seeds",
        _csv(checked.seeds),
    ]
    if checked.recipe:
        argv += ["--recipe", checked.recipe]
    return argv + _budget_argv(checked.budget)


def repro_argv(store: RunStore, spec: ReproSpec) -> list[str]:
    """Writes the config to a file in the store (the command reads one) and returns the arguments."""
    import yaml

    checked = check_repro(spec)
    path = store.root / "experiments" / f"repro-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(checked.config.to_dict(), sort_keys=True), encoding="utf-8")
    argv = ["repro", "--config", str(path), "--seeds", _csv(checked.seeds), "--threads", _csv(checked.threads)]
    return argv + ["--devices", ",".join(checked.devices or ("cpu",))]


def start(store: RunStore, argv: list[str]) -> subprocess.Popen:
    """Start `python -m kdcore experiment ARGV --json` in its own session; its output goes to a log file
    under <store>/experiments/."""
    logs = Path(store.root) / "experiments"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{argv[0]}-{time.strftime('%Y%m%d-%H%M%S')}.log", "ab")
    env = dict(os.environ, KDWB_HOME=str(store.root))
    if store.workspace is not None:  # a workshop participant's experiment and runs stay in their workspace
        env[WORKSPACE_ENV] = store.workspace
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "kdcore", "experiment", *argv, "--json"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=os.getcwd(),
        )
    finally:
        log.close()
