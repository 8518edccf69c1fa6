"""A pair's recommended recipe: the training budget and KD settings under which distilling beats
the student trained alone on the same budget (measured over 3 seeds, each run under a minute of CPU).

    from kdcore.jobs.recipes import with_recipe
    cfg, filled = with_recipe(JobConfig(pair="digits", epochs=5), recipe, user_set={"epochs"})
    # cfg: the recipe's lr, schedule, training size, T and λ; the user's 5 epochs kept

The CLI and the Distill form call `with_recipe` with the fields the user set; the rest come from
the recipe, and `filled` names them so the page (or the command's output) can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from kdcore.jobs.config import ALIASES, JobConfig
from kdcore.validation import InvalidParameterError

# Recipe fields that only mean something for the recipe's own objective (KD's T and λ).
_OBJECTIVE_FIELDS = ("temperature", "lam")
_NO_TEACHER = ("ce", "ls")  # objectives without a teacher: no teacher cache
_NO_CACHE = (*_NO_TEACHER, "gkd", "minillm", "distillm")  # + on-policy ones: their sequences change every step


@dataclass(frozen=True)
class Recipe:
    """Job settings that make distilling pay on one pair (JobConfig field names)."""

    objective: str = "kd"  # the objective the recipe was measured with
    temperature: float | None = 4.0  # T (None: the objective has none, or its default)
    lam: float | None = 0.9  # KD's λ (None: not KD)
    lr: float = 1e-2  # peak learning rate (adam)
    schedule: str = "cosine"  # learning-rate schedule
    epochs: int = 50  # passes over the training subset
    train_size: int | None = 512  # first n training samples (None: the whole split)
    batch_size: int = 64  # samples per step
    teacher_cache: bool = True  # teacher outputs computed once and reused
    measured: str = ""  # what it gave, e.g. "KD 0.968 ± 0.007 vs alone 0.945 ± 0.004 (3 seeds)"

    def __post_init__(self) -> None:
        cfg = JobConfig(
            objective=self.objective,
            temperature=self.temperature,
            lam=self.lam,
            lr=self.lr,
            schedule=self.schedule,
            epochs=self.epochs,
            train_size=self.train_size,
            batch_size=self.batch_size,
            teacher_cache=self.teacher_cache,
        )
        problems = cfg.problems()
        if problems:
            raise InvalidParameterError(
                f"A Recipe must hold valid job settings; got: {'; '.join(problems)}. Fix the values named above."
            )

    def settings(self) -> dict:
        """The JobConfig fields the recipe sets -> their values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measured"}

    def fills(self, objective: str, user_set: Iterable[str]) -> list[str]:
        """The fields the recipe fills for a job with this objective: those the user did not set;
        T and λ only when the objective is the recipe's own."""
        user = set(user_set)
        own = _canonical(objective) == _canonical(self.objective)
        skip = set(user) | (set() if own else set(_OBJECTIVE_FIELDS))
        if _canonical(objective) in _NO_CACHE:
            skip.add("teacher_cache")
        return [k for k in self.settings() if k not in skip]

    def apply(self, config_fields: dict, user_set: Iterable[str]) -> dict:
        """`config_fields` (JobConfig field -> value) with the recipe's value in every field of `fills`."""
        user = set(user_set)
        objective = config_fields.get("objective", self.objective) if "objective" in user else self.objective
        return {**config_fields, **{k: getattr(self, k) for k in self.fills(objective, user)}}

    def describe(self) -> str:
        """One line for a page or `--help`: what the recipe sets and what it gave."""
        return self.settings_text() + (f" ({self.measured})" if self.measured else "")

    def settings_text(self) -> str:
        """What the recipe sets, in one line ("kd, lr 0.01 cosine, 50 epochs, ..."), without `measured`."""
        parts = [
            self.objective,
            f"lr {self.lr:g} {self.schedule}",
            f"{self.epochs} epochs",
            f"{self.train_size} training samples" if self.train_size else "the whole training split",
            f"batch {self.batch_size}",
        ]
        if self.temperature is not None:
            parts.append(f"T {self.temperature:g}")
        if self.lam is not None:
            parts.append(f"λ {self.lam:g}")
        return ", ".join(parts)


def _canonical(objective: str) -> str:
    return ALIASES.get(objective, objective)


def with_recipe(config: JobConfig, recipe: Recipe | None, user_set: Iterable[str]) -> tuple[JobConfig, list[str]]:
    """(config with the recipe's values in every field the user did not set, the fields filled).

    config:   the job as built from the user's input (fields not set keep JobConfig's defaults)
    recipe:   the pair's recipe, or None (a pair without one: the config is returned unchanged)
    user_set: names of the JobConfig fields the user set explicitly (flags, form fields, config file)
    """
    if recipe is None:
        return config, []
    if not isinstance(recipe, Recipe):
        raise InvalidParameterError(
            f"The 'recipe' argument of with_recipe must be a kdcore.jobs.recipes.Recipe or "
            f"None. Got {type(recipe).__name__} instead."
        )
    if not isinstance(config, JobConfig):
        raise InvalidParameterError(
            f"The 'config' argument of with_recipe must be a JobConfig. Got {type(config).__name__} instead."
        )
    user = set(user_set)
    before = config.to_dict()
    after = recipe.apply({k: before[k] for k in recipe.settings()}, user)
    objective = before["objective"] if "objective" in user else recipe.objective
    return replace(config, **after), recipe.fills(objective, user)


def recipes_help(recipes: Mapping[str, Recipe]) -> str:
    """A paragraph for `--help` (or a page): each pair's recipe, used for the fields the user does not set."""
    lines = [
        "Fields you do not set come from the pair's recipe (settings under which KD beats the student "
        "alone on the same budget):"
    ]
    lines += [f"  {name}: {recipe.describe()}" for name, recipe in sorted(recipes.items())]
    return "\n".join(lines)


def pair_recipe(name: str) -> Recipe | None:
    """The recipe registered with the pair `name` (kdcore.pair_registry), or None: a pair registered
    without one, a "module:factory" pair, or a name nobody registered (running it names the known pairs).

    A mapping of Recipe fields is accepted and turned into a Recipe; anything else is refused.
    """
    from kdcore.pair_registry import registered_pairs

    entry = registered_pairs().get(name) if isinstance(name, str) and ":" not in name else None
    recipe = None if entry is None else entry.recipe
    if recipe is None or isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        known = {f.name for f in fields(Recipe)}
        unknown = sorted(set(recipe) - known)
        if not unknown:
            return Recipe(**dict(recipe))
        raise InvalidParameterError(
            f"The recipe registered with pair {name!r} has unknown field(s) {unknown}. "
            f"Expected a kdcore.jobs.recipes.Recipe or a mapping of its fields "
            f"({', '.join(sorted(known))}); register the pair with one of those."
        )
    raise InvalidParameterError(
        f"The recipe registered with pair {name!r} must be a kdcore.jobs.recipes.Recipe, a "
        f"mapping of its fields, or None. Got {type(recipe).__name__} instead; register "
        f"the pair with recipe=Recipe(...)."
    )


def form_defaults(recipe: Recipe | None, objective: str) -> dict[str, Any]:
    """A form's initial values for a job with this objective: the recipe's value of every field it
    fills (`Recipe.fills` with nothing set by the user), JobConfig's default for the others.

    Keys: the Recipe's fields (objective, temperature, lam, lr, schedule, epochs, train_size,
    batch_size, teacher_cache); temperature and lam are None when the method's own default applies.
    """
    base = JobConfig(objective=objective).to_dict()
    out = {k: base[k] for k in Recipe().settings()}
    if recipe is not None:
        out.update({k: getattr(recipe, k) for k in recipe.fills(objective, user_set={"objective"})})
    return out


def student_alone(config: JobConfig, **changes: Any) -> JobConfig:
    """`config` with the student trained alone: plain cross-entropy, no teacher settings; `changes` on top."""
    return replace(
        config,
        objective="ce",
        params={},
        terms=[],
        temperature=None,
        lam=None,
        ce_weight=None,
        teacher_cache=False,
        cache_top_k=None,
        **changes,
    )


def workshop_configs(pair: str, recipe: Recipe | None, **job_fields: Any) -> tuple[JobConfig, JobConfig]:
    """(the run on the pair's recipe, the student alone with the same budget): the workshop preset.

    The student-alone run has objective "ce" and the recipe run's epochs, training size, batch size,
    lr, schedule and seed; no teacher. `job_fields` are other JobConfig fields for both (seed, device).
    A pair without a recipe gets JobConfig's defaults (objective kd).
    """
    user = {"pair", *job_fields}
    kd, _ = with_recipe(JobConfig(pair=pair, **job_fields), recipe, user)
    alone = student_alone(kd, name=f"student alone (same budget as {kd.objective})")
    kd = replace(kd, name=f"{kd.objective} on the {pair} recipe" if recipe is not None else f"{kd.objective}")
    return kd.validate(), alone.validate()
