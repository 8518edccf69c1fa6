"""student_init="from_teacher" for a registered or `module:factory` pair (METHODS §14.2): the run's student
is the pair's own student architecture with its weights copied from the teacher's blocks
(kdcore.adapters.adapter_from_teacher); a Hugging Face teacher directory (`config.teacher`) builds its
from_teacher student in kdcore.jobs.pair_source instead.

    mapping = check_student_init(config, pair)        # at prepare time: refused before anything trains
    student, mapping = student_from_teacher(config, pair)   # in _place_models: a new adapter
"""

from __future__ import annotations

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.module_student import adapter_from_teacher, checked_subset_plan, mapping_text
from kdcore.jobs.config import JobConfig, resolved_student_init
from kdcore.pairs import Pair


def pair_from_teacher(config: JobConfig) -> bool:
    """Whether the config initialises a registered pair's student from its teacher's blocks."""
    return resolved_student_init(config) == "from_teacher" and not config.teacher


def refuse_in_chain(config: JobConfig) -> None:
    """Chains (TAKD, DGKD, BAN) train a ladder of models, each from the previous one: a registered pair's
    from_teacher student is refused there (ValueError) rather than initialised stage by stage."""
    if pair_from_teacher(config):
        raise ValueError(
            f"student_init 'from_teacher' initialises a single run's student; the chain {config.objective!r} "
            f"trains a ladder of models, each from the previous one. Run a single objective (e.g. 'kd') with "
            f"from_teacher, or the chain with student_init 'reinit'."
        )


def check_student_init(config: JobConfig, pair: Pair) -> dict[str, list[int]]:
    """{container: teacher blocks} of a pair's from_teacher student ({} for other inits); ValueError
    naming the pair, the reason and the fix when its student is not a shallower copy of its teacher."""
    if not pair_from_teacher(config):
        return {}
    try:
        return checked_subset_plan(pair.teacher.model, pair.student.model, config.layer_rule)
    except ValueError as exc:
        raise ValueError(
            f"student_init 'from_teacher' does not fit the pair {pair.name!r}: {exc} Otherwise train "
            f"the pair's student with student_init 'reinit' or 'pretrained'."
        ) from exc


def student_from_teacher(config: JobConfig, pair: Pair) -> tuple[ModelAdapter, dict[str, list[int]]]:
    """A new student adapter: the pair's student architecture initialised from the teacher's blocks."""
    return adapter_from_teacher(pair.teacher, pair.student, config.layer_rule)


def init_notice(mapping: dict[str, list[int]]) -> str:
    """The run's record of the mapping: "student init from teacher: layer1 ← [0, 2], …"."""
    return f"student init from teacher: {mapping_text(mapping)}"
