"""`Pair`: a teacher, a student, optionally a student trained without a teacher, and their dataset.
Import it from kdcore.pairs, which also holds the registry of pairs by name (kdcore/pair_registry.py).

A pair checks itself when built: all models are adapters of one kind whose outputs have the same
size (classes, or vocabulary for causal LMs), and the dataset's task and class count / vocabulary
size agree with them. Encoders (kind "encoder", a pooled embedding [B, H] as the output) may have
different widths, and fit "encoder" datasets (sentences without labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdcore.adapters.base import ModelAdapter
from kdcore.data.base import Dataset

_TASKS = {"classifier": ("classification", "multilabel"), "causal_lm": ("causal_lm",), "encoder": ("encoder",)}


@dataclass
class Pair:
    """A teacher/student pair to distil and compare (API.md "Models, pairs and data").

    name:             display name
    teacher:          the teacher's adapter
    student:          the student's adapter (distilled, or to be distilled)
    student_baseline: the student architecture trained without a teacher, or None
    dataset:          the data both are evaluated on, or None
    ladder:           optional student ladder: models of the same kind sized strictly between student
                      and teacher, largest first, each trained on the labels (the teacher assistants
                      of TAKD / DGKD chains, kdcore/jobs/chain.py; methods/13 §13.2)
    """

    name: str
    teacher: ModelAdapter
    student: ModelAdapter
    student_baseline: ModelAdapter | None = None
    dataset: Dataset | None = None
    ladder: tuple[ModelAdapter, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"The 'name' parameter of Pair must be a non-empty string. Got {self.name!r} instead.")
        if not isinstance(self.ladder, (tuple, list)):
            raise ValueError(
                f"The 'ladder' parameter of Pair must be a tuple of ModelAdapters (largest first). "
                f"Got {type(self.ladder).__name__} instead."
            )
        self.ladder = tuple(self.ladder)
        roles = {"teacher": self.teacher, "student": self.student}
        if self.student_baseline is not None:
            roles["student_baseline"] = self.student_baseline
        roles.update({f"ladder[{i}]": a for i, a in enumerate(self.ladder)})
        for role, adapter in roles.items():
            if not isinstance(adapter, ModelAdapter):
                raise ValueError(
                    f"The '{role}' parameter of Pair must be a ModelAdapter (see kdcore.adapters.wrap). "
                    f"Got {type(adapter).__name__} instead."
                )
        for role, adapter in roles.items():
            if adapter.kind != self.teacher.kind:
                raise ValueError(
                    f"Pair {self.name!r}: the teacher is a {self.teacher.kind} but the {role} is a "
                    f"{adapter.kind}. Teacher and student must be the same kind of model."
                )
        size = self.teacher.output_size
        for role, adapter in roles.items():
            if self.kind != "encoder" and adapter.output_size != size:  # encoder widths may differ
                raise ValueError(self._size_message(role, adapter.output_size, size))
        if self.dataset is not None:
            self._check_dataset(size)

    def _size_message(self, role: str, got: int, want: int) -> str:
        if self.kind == "causal_lm":
            return (
                f"Pair {self.name!r}: the vocabularies differ: the teacher has {want} tokens, the {role} has {got}. "
                f"Distil across tokenizers with the 'uld' divergence (universal logit distillation), or pick "
                f"models that share a tokenizer."
            )
        return (
            f"Pair {self.name!r}: the class counts differ: the teacher has {want} classes, the {role} has {got}. "
            f"Teacher and student must predict the same classes."
        )

    def _check_dataset(self, size: int) -> None:
        ds = self.dataset
        if not isinstance(ds, Dataset):
            raise ValueError(
                f"The 'dataset' parameter of Pair must be a kdcore.data.Dataset. Got {type(ds).__name__} instead."
            )
        if ds.task not in _TASKS[self.kind]:
            raise ValueError(
                f"Pair {self.name!r}: dataset {ds.name!r} is a {ds.task} task, but the models are "
                f"{self.kind}s (which fit {' or '.join(_TASKS[self.kind])} data)."
            )
        what = "vocabulary size" if self.kind == "causal_lm" else "number of classes"
        if self.kind != "encoder" and ds.size != size:
            raise ValueError(
                f"Pair {self.name!r}: dataset {ds.name!r} has a {what} of {ds.size}, but the models' "
                f"outputs have {size}. Use a dataset and models made for each other."
            )

    @property
    def kind(self) -> str:
        """ "classifier", "causal_lm" or "encoder" (the teacher's, which every model shares)."""
        return self.teacher.kind

    @property
    def output_size(self) -> int:
        """Classes (classifier), vocabulary size (causal LM) or the teacher's embedding width (encoder)."""
        return self.teacher.output_size

    def models(self) -> dict[str, ModelAdapter]:
        """The adapters by role: teacher, student and (when present) student_baseline."""
        out = {"teacher": self.teacher, "student": self.student}
        if self.student_baseline is not None:
            out["student_baseline"] = self.student_baseline
        return out
