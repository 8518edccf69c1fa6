"""A job from the app's Distill form: one field per method parameter, the pair's recipe for the rest.

Kept apart from `config.py` (which `recipes.py` imports) so that neither imports the other in a circle.
"""

from __future__ import annotations

from typing import Any

from kdcore.jobs.config import JobConfig
from kdcore.jobs.recipes import with_recipe
from kdcore.methods import Method, get_method
from kdcore.methods.params import TEXT_KINDS, parse_text


def config_from_form(pair: str, objective: str, values: dict, *, recipe: Any = None, **fields: Any) -> JobConfig:
    """A job from a form with one field per method parameter (the app's Distill page).

    Text typed for layer maps and number lists is parsed (`parse_text`). The method's shared
    parameters (temperature, lam) go to the job's fields of that name, so protocols and run lists
    show them; the others go to `params`; empty fields (None) are left unset. `fields` are the
    other JobConfig fields (epochs, lr, ...). `recipe` (the pair's kdcore.jobs.recipes.Recipe, or
    None) fills every recipe field the form left out or empty (`with_recipe`); the form's initial
    values come from `kdcore.jobs.recipes.form_defaults`. Unknown methods raise, listing the known
    ones; parameter values are checked by `validate()`.
    """
    method = get_method(objective)
    values = {k: parse_text(method.param(k), v) if _typed_as_text(method, k, v) else v for k, v in values.items()}
    shared: dict[str, Any] = {p.name: values.get(p.name) for p in method.params if p.shared}
    params = {k: v for k, v in values.items() if v is not None and k not in shared}
    cfg = JobConfig(pair=pair, objective=method.name, params=params, **shared, **fields)
    user_set = {"pair", "objective", *fields, *params, *(k for k, v in shared.items() if v is not None)}
    return with_recipe(cfg, recipe, user_set)[0]


def _typed_as_text(method: Method, name: str, value: Any) -> bool:
    return isinstance(value, str) and method.takes(name) and method.param(name).kind in TEXT_KINDS
