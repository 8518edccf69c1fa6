"""A user's own pair as one value: two Hugging Face directories, or two module:factory names with their weights
files, and the data they run on (kdcore.data.sources.DataSource). The app's sidebar builds one; it loads the
pair to explore and gives the JobConfig fields that distil it.

    src = OwnPairSource("hf", "runs/teacher", "runs/student", data, "causal_lm")
    pair = src.load()                                          # teacher, student and dataset
    config = JobConfig(**src.job_fields("from_teacher", 2))    # the job on the same pair

A module:factory student without a weights file (`student_weights` "") is its factory's own initialisation
(untrained; kdcore.jobs.factory_source.fresh_factory_student). Importing a factory runs its module: callers
that serve others check the names first (the app's safety rules); nothing here decides who may load what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdcore.data.sources import DataSource, load_data_source
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

MODES = ("hf", "factory")


@dataclass(frozen=True)
class OwnPairSource:
    """The models and data of a user's own pair (hashable: a cache key as it stands)."""

    mode: str  # "hf": Hugging Face directories; "factory": module:factory names with weights files
    teacher: str  # a directory, or "module:factory"
    student: str
    data: DataSource
    kind: str  # hf: causal_lm | encoder | sequence_classification; factory: classifier | causal_lm
    teacher_weights: str = ""  # factory: the teacher's weights file
    student_weights: str = ""  # factory: "" builds the student untrained (its factory's own initialisation)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidParameterError(
                f"OwnPairSource.mode must be one of {', '.join(MODES)}; got {self.mode!r}. Use 'hf' for Hugging "
                f"Face directories or 'factory' for module:factory names."
            )

    @property
    def untrained_student(self) -> bool:
        """Whether the student is a factory's own initialisation (no weights file)."""
        return self.mode == "factory" and not self.student_weights

    def load(self) -> Pair:
        """The pair: both models (loaded fresh; the caller caches) and the dataset."""
        from kdcore.adapters import ModelAdapter, load_factory, load_hf
        from kdcore.jobs.factory_source import fresh_factory_student

        dataset = load_data_source(self.data)
        teacher: ModelAdapter
        student: ModelAdapter
        if self.mode == "hf":
            teacher, student = load_hf(self.teacher, kind=self.kind), load_hf(self.student, kind=self.kind)
        else:
            teacher = load_factory(self.teacher, self.teacher_weights, kind=self.kind)
            student = (
                load_factory(self.student, self.student_weights, kind=self.kind)
                if self.student_weights
                else fresh_factory_student(self.student, self.kind)  # seeded as a run of seed 0 builds it
            )
        return Pair(name="your pair", teacher=teacher, student=student, dataset=dataset)

    def job_fields(
        self, student_init: str = "pretrained", student_layers: int | None = None, layer_rule: str = "spread"
    ) -> dict[str, Any]:
        """The JobConfig fields that distil this pair: the models, `data` and `data_options`, `model_kind` and
        the student's start (student_layers: a from_teacher student's depth, Hugging Face pairs only)."""
        if self.mode == "factory":
            return self._factory_fields(student_init, layer_rule)
        if self.data.format not in ("hf_text", "hf_sentences"):
            raise InvalidParameterError(
                "A job on Hugging Face directories trains on a data file read by the teacher's tokenizer "
                f"(text, JSONL or CSV); got data of format {self.data.format!r}. Name a text data file."
            )
        options: dict[str, Any] = {"context_length": int(self.data.context_length), "text_field": self.data.text_field}
        if self.data.format == "hf_sentences" and self.data.label_field:
            options["label_field"] = self.data.label_field
        from_teacher = student_init == "from_teacher"
        return {
            "teacher": self.teacher,
            "student": "" if from_teacher else self.student,
            "data": self.data.location,
            "data_options": options,
            "model_kind": self.kind,
            "student_init": student_init,
            "student_layers": int(student_layers) if from_teacher and student_layers is not None else None,
            "layer_rule": layer_rule,
        }

    def _factory_fields(self, student_init: str, layer_rule: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.data.format != "builtin":
            options["format"] = self.data.format
        if self.data.format == "table":
            options["label_field"] = self.data.label_field or "label"
        if self.data.format == "text":
            options["tokenizer"] = self.data.tokenizer
        return {
            "teacher_factory": self.teacher,
            "teacher_weights": self.teacher_weights,
            "student_factory": self.student,
            "student_weights": self.student_weights,
            "data": self.data.location,
            "data_options": options,
            "model_kind": self.kind,
            "student_init": student_init,
            "layer_rule": layer_rule,
        }
