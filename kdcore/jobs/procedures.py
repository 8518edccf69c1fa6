"""Methods that are a training procedure rather than a per-step loss (Method.procedure): block-wise
logit distillation's stepping stones (blockwise.py), PWKD's sub-teacher stages (pwkd.py) and
zero-shot knowledge transfer's generator (zskt.py).

`run_job` hands such a job to its procedure, so the CLI (`python -m kdcore distill --objective
blockwise`), the worker (the app's queue), the leaderboard and the API run them like any run.
`check_procedure(config, pair)` refuses a job before anything runs (the app's form calls it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from kdcore.jobs.config import JobConfig
from kdcore.jobs.run_options import RunOptions
from kdcore.methods import get_method
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError


def procedure_name(config: JobConfig) -> str:
    """The procedure's method name of a job ("" for an ordinary per-step job). A procedure method is
    refused as a term of a weighted sum: it is a whole training procedure."""
    if config.objective == "sum":
        for term in config.terms if isinstance(config.terms, list) else []:
            name = term.get("name") if isinstance(term, dict) else getattr(term, "name", None)
            try:
                inner = get_method(name)
            except ValueError:
                continue
            if inner.procedure:
                raise InvalidParameterError(
                    f"The term {inner.name!r} is a training procedure, not a per-step loss: it cannot be a term of "
                    f"objective 'sum'. Run it alone: objective={inner.name!r}."
                )
        return ""
    try:
        method = get_method(config.objective)
    except ValueError:
        return ""
    return method.name if method.procedure else ""


def _load(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _check_no_schedules(config: JobConfig, name: str) -> None:
    if getattr(config, "schedules", None):
        raise InvalidParameterError(
            f"{name!r} runs its own training procedure, which job schedules do not reach (got schedules for "
            f"{sorted(config.schedules)}): remove `schedules`, or set the method's parameters instead."
        )


def run_procedure(config: JobConfig, options: RunOptions) -> Any:
    """Run a procedure job with run_job's options; returns its RunResult."""
    method = get_method(config.objective)
    _check_no_schedules(config, method.name)
    return _load(method.procedure)(config, options)


def check_procedure(config: JobConfig, pair: Pair | None = None) -> None:
    """Everything the procedure checks before it runs (stages, widths, the task); raises with the fix."""
    name = procedure_name(config)
    if not name:
        return
    _check_no_schedules(config, name)
    module = get_method(name).procedure.partition(":")[0]
    _load(f"{module}:check")(config, pair)
