"""student_init="from_teacher" for a registered or `module:factory` pair (METHODS §14.2): the run's student
is the pair's own student architecture with its weights copied from the teacher's blocks
(kdcore.adapters.adapter_from_teacher); a Hugging Face teacher directory (`config.teacher`) builds its
from_teacher student in kdcore.jobs.pair_source instead.

    mapping = check_student_init(config, pair)        # at prepare time: refused before anything trains
    student, mapping = student_from_teacher(config, pair)   # in _place_models: a new adapter
    made = write_pair_student("module:factory", "out/")      # make-student --pair: the files
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.hf_files import check_new_dir
from kdcore.adapters.module_student import adapter_from_teacher, checked_subset_plan, mapping_text
from kdcore.jobs.config import JobConfig, resolved_student_init
from kdcore.pairs import Pair

STUDENT_FILE = "student.safetensors"  # write_pair_student's files
MAPPING_FILE = "mapping.json"


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


@dataclass(frozen=True)
class PairStudent:
    """What write_pair_student wrote.

    path:         the directory: student.safetensors (the initialised student's state_dict), mapping.json
    mapping:      {block container: the teacher blocks copied into its student blocks, in order}
    pair:         the pair's name
    architecture: the student model's class name (load the file into the pair's student architecture)
    """

    path: Path
    mapping: dict[str, list[int]]
    pair: str
    architecture: str


def write_pair_student(pair_name: str, out_dir: str | Path, rule: str = "spread", offset: int = 0) -> PairStudent:
    """Initialise the pair `pair_name`'s student (a registered name or "module:factory") from its teacher's
    blocks and write it to `out_dir` (new or empty): student.safetensors and mapping.json. A pair whose
    student is not a shallower copy of its teacher is refused (InvalidParameterError) before anything is written."""
    from safetensors.torch import save_file

    from kdcore.jobs.resolve import resolve_pair

    out = check_new_dir(out_dir, name="out_dir", where="write_pair_student")
    pair = resolve_pair(pair_name)
    student, mapping = adapter_from_teacher(pair.teacher, pair.student, rule, offset)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_file_state(student), str(out / STUDENT_FILE), metadata=_file_metadata(pair.name, mapping))
    (out / MAPPING_FILE).write_text(json.dumps(mapping, indent=2) + "\n", encoding="utf-8")
    return PairStudent(out, mapping, pair.name, type(student.model).__name__)


def from_teacher_fit(pair: Pair, rule: str = "spread") -> tuple[dict[str, list[int]] | None, str]:
    """(mapping, "") when the pair's student can start from its teacher's blocks, else (None, the reason
    and the fix); nothing is copied (the forms check this before offering the option)."""
    try:
        return checked_subset_plan(pair.teacher.model, pair.student.model, rule), ""
    except ValueError as exc:
        return None, str(exc)


def mapping_rows(mapping: dict[str, list[int]]) -> list[dict[str, object]]:
    """One row per student block: {"container", "student block", "teacher block"} (a table of the mapping)."""
    return [
        {"container": name or "model", "student block": i, "teacher block": j}
        for name, kept in mapping.items()
        for i, j in enumerate(kept)
    ]


def student_file_bytes(student: ModelAdapter, pair_name: str, mapping: dict[str, list[int]]) -> bytes:
    """The initialised student's state_dict as safetensors bytes (what write_pair_student writes)."""
    from safetensors.torch import save

    return save(_file_state(student), metadata=_file_metadata(pair_name, mapping))


def _file_state(student: ModelAdapter) -> dict:
    """Contiguous CPU copies (tied tensors saved apart: safetensors refuses shared storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in student.model.state_dict().items()}


def _file_metadata(pair_name: str, mapping: dict[str, list[int]]) -> dict[str, str]:
    return {"pair": pair_name, "mapping": json.dumps(mapping)}
