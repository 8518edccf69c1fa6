"""Runs whose student carries more than its own head (methods/13 §13.4b BYOT, §13.5 education), and
on-policy runs (methods/14): what they need checked before anything runs. The job classes that train
them (byot_job.py, education_job.py, onpolicy_job.py) are picked by runner.job_class.

    terms, s_layers = prepare_strategy(config, pair, task, train_inputs, terms, s_layers)  # in prepare_run

`prepare_strategy` resolves the exit (or grade) layers from the student's default layers into the
term's params and refuses, with the reason and the fix, a model without usable exit layers, a
method inside 'sum', a schedule the run cannot reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from kdcore.exits import exit_layers, exit_problems, layer_problems
from kdcore.jobs.config import JobConfig, LossTerm
from kdcore.jobs.onpolicy_checks import ONPOLICY, onpolicy_problems

if TYPE_CHECKING:
    from kdcore.pairs import Pair

STRATEGIES = ("byot", "education")


def prepare_strategy(
    config: JobConfig,
    pair: Pair,
    task: str,
    inputs: Tensor,
    terms: list[LossTerm],
    s_layers: list[str],
    prompt_len: Tensor | None = None,
) -> tuple[list[LossTerm], list[str]]:
    """(terms, student layers) with the strategy's layers resolved; raises ValueError when it cannot run.
    prompt_len: [N] prompt lengths of prompt/completion data (on-policy prompts=records/auto), else None."""
    names = [t.name for t in terms]
    if any(n in ONPOLICY for n in names):  # gkd, minillm, distillm: generation must fit the pair
        problems = onpolicy_problems(config, pair, terms, inputs, prompt_len)
        if problems:
            raise _refuse(config, problems)
        return terms, s_layers
    inside = [n for n in names if n in STRATEGIES]
    if not inside or task != "classification":  # another task: fit_problems has refused it already
        return terms, s_layers
    if len(terms) > 1 or config.objective == "sum":
        raise _refuse(
            config,
            [
                f"'{inside[0]}' trains parts of its own (exits, grade heads): make it the job's objective, not a term of 'sum'"
            ],
        )
    term = terms[0]
    if term.name == "byot":
        layers = exit_layers(pair.student, term.params["layers"])
        problems = exit_problems(pair.student, layers, inputs[:2], what="objective 'byot'")
        if problems:
            raise _refuse(config, problems)
        return [LossTerm(term.name, term.weight, {**term.params, "layers": layers})], layers
    layers, problems = _education_layers(config, pair, inputs, term.params)
    if problems:
        raise _refuse(config, problems)
    return [LossTerm(term.name, term.weight, {**term.params, "layers": layers})], list(dict.fromkeys(layers))


def _education_layers(config: JobConfig, pair: Pair, inputs: Tensor, p: dict) -> tuple[list[str], list[str]]:
    """The layer each grade's head reads (grades 1 … G − 1), and what stops the schedule."""
    from kdcore.losses import grade_partition

    grades = len(p["ratios"])
    c_s, c_t = pair.student.output_size, pair.teacher.output_size
    if c_s != c_t:
        return [], [
            f"education restricts the teacher to each grade's classes, so both models need the same classes; the student has {c_s}, the teacher {c_t}"
        ]
    try:
        grade_partition(c_s, p["ratios"])
    except ValueError as exc:
        return [], [f"params.ratios: {exc}"]
    if config.epochs < grades:
        return [], [
            f"education with {grades} grades needs at least {grades} epochs (one per grade); got epochs={config.epochs}: raise epochs or use fewer ratios"
        ]
    if p["boundaries"] is not None and p["boundaries"][-1] > config.epochs:
        return [], [
            f"params.boundaries {p['boundaries']} start a grade after the last epoch ({config.epochs}): the student would never be complete; lower them or raise epochs"
        ]
    if grades == 1:
        return [], []
    default = pair.student.default_layers()
    if p["layers"] is None and not default:
        return [], [f"{pair.student.name} has no default layers for the grades' heads: name them with params.layers"]
    layers = (
        list(p["layers"]) if p["layers"] is not None else [default[min(g, len(default)) - 1] for g in range(1, grades)]
    )
    return layers, layer_problems(pair.student, layers, inputs[:2], what="objective 'education'")


def _refuse(config: JobConfig, problems: list[str]) -> ValueError:
    return ValueError(
        "The objective does not fit the pair " + repr(config.pair) + ":\n" + "\n".join(f"  - {p}" for p in problems)
    )
