"""Layer-subset initialisation of an in-memory student (METHODS §14.2): a shallower copy of its teacher.

Every block container (a ModuleList, or a Sequential of children of one class: ResNet stages,
transformer layer lists) that has L_t blocks in the teacher and L_s < L_t in the student, under the
same name, takes teacher blocks j_0..j_{L_s−1} = `layer_subset_indices(L_t, L_s, rule, offset)` in
order; every other tensor (parameters and buffers: BatchNorm running statistics and batch count)
is copied by name. Copies, never views; neither model is changed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.adapters.make_student import _block_stacks, _copy_weights, _teacher_key
from kdcore.validation import InvalidParameterError

_WHERE = "init_from_teacher"


def init_from_teacher(
    teacher: nn.Module, student: nn.Module, rule: str | Sequence[int] = "spread", offset: int = 0
) -> tuple[nn.Module, dict[str, list[int]]]:
    """A new student (a deep copy of `student`) initialised from `teacher`'s blocks, and the mapping.

    teacher, student: modules of one architecture, the student with fewer blocks in some containers
    rule, offset:     which teacher blocks, per container, see `layer_subset_indices` ("spread" keeps
                      the first block, which holds a stage's stride and projection, and the last)
    Returns (new student, {container name: teacher block copied into student block i, for each i}).
    """
    for name, model in (("teacher", teacher), ("student", student)):
        if not isinstance(model, nn.Module):
            raise InvalidParameterError(
                f"The '{name}' parameter of {_WHERE} must be a torch.nn.Module. Got {type(model).__name__} instead."
            )
    mapping = checked_subset_plan(teacher, student, rule, offset)
    new_student = copy.deepcopy(student)
    _copy_weights(teacher, new_student, mapping, where=_WHERE)
    return new_student, mapping


def checked_subset_plan(
    teacher: nn.Module, student: nn.Module, rule: str | Sequence[int] = "spread", offset: int = 0
) -> dict[str, list[int]]:
    """`subset_plan`, after checking that every tensor has its counterpart of the same shape: what
    `init_from_teacher` would refuse, found without copying a weight (InvalidParameterError)."""
    mapping = subset_plan(teacher, student, rule, offset)
    _check_key_sets(teacher, student, mapping)
    _check_shapes(teacher, student, mapping)
    return mapping


def adapter_from_teacher(
    teacher: ModelAdapter, student: ModelAdapter, rule: str | Sequence[int] = "spread", offset: int = 0
) -> tuple[ModelAdapter, dict[str, list[int]]]:
    """A clone of the `student` adapter (its layers, name, kind) whose model is initialised from the
    `teacher` adapter's blocks (see `init_from_teacher`), and the mapping; neither adapter is changed."""
    mapping = checked_subset_plan(teacher.model, student.model, rule, offset)
    new = student.clone(reinit=False)
    _copy_weights(teacher.model, new.model, mapping, where=_WHERE)
    return new, mapping


def mapping_text(mapping: dict[str, list[int]]) -> str:
    """ "layer1 ← [0, 2], layer2 ← [0, 1, 3]": student container ← the teacher blocks it copies, in order."""
    return ", ".join(f"{name or 'model'} ← {list(kept)}" for name, kept in mapping.items())


def subset_plan(
    teacher: nn.Module, student: nn.Module, rule: str | Sequence[int] = "spread", offset: int = 0
) -> dict[str, list[int]]:
    """{container name: teacher block indices} for the block containers whose lengths differ."""
    plan: dict[str, list[int]] = {}
    for name, (n_t, n_s) in _block_stacks(teacher, student).items():
        if n_t == n_s or any(name.startswith(f"{outer}.") or not outer for outer in plan):
            continue  # same depth, or inside a container already subset (its blocks are renamed)
        if n_s > n_t:
            raise InvalidParameterError(
                f"{_WHERE}: the student's {name or 'model'!r} has {n_s} blocks but the teacher's has "
                f"only {n_t}; a student initialised from its teacher cannot be deeper. Give it at most {n_t}."
            )
        plan[name] = layer_subset_indices(n_t, n_s, rule, offset)
    if not plan:
        raise InvalidParameterError(
            f"{_WHERE} found no block container (ModuleList, or Sequential of blocks of one class) with "
            f"fewer blocks in the student than in the teacher: nothing to subset. Give the student the "
            f"teacher's architecture with fewer blocks per stage, or copy the weights with load_state_dict."
        )
    return plan


def _check_key_sets(teacher: nn.Module, student: nn.Module, mapping: dict[str, list[int]]) -> None:
    """Every student tensor has its mapped teacher tensor, and every teacher tensor outside the dropped
    blocks is copied."""
    t_keys = set(teacher.state_dict())
    mapped = {_teacher_key(key, mapping): key for key in student.state_dict()}
    missing = sorted(s if s == t else f"{s} (as teacher {t})" for t, s in mapped.items() if t not in t_keys)
    dropped = tuple(
        f"{name}.{j}." if name else f"{j}."
        for name, kept in mapping.items()
        for j in set(range(len(list(_container(teacher, name).children())))) - set(kept)
    )
    extra = sorted(k for k in t_keys - set(mapped) if not k.startswith(dropped))
    if missing or extra:
        raise InvalidParameterError(
            f"{_WHERE}: the student is not a shallower copy of the teacher. Student tensors without a "
            f"teacher counterpart: {', '.join(missing[:5]) or 'none'}; teacher tensors (outside dropped "
            f"blocks) the student lacks: {', '.join(extra[:5]) or 'none'}. Build the student from the teacher's architecture."
        )


def _check_shapes(teacher: nn.Module, student: nn.Module, mapping: dict[str, list[int]]) -> None:
    """Every student tensor has its mapped teacher tensor's shape (the same widths and kernel sizes)."""
    t_state = teacher.state_dict()
    for key, s_tensor in student.state_dict().items():
        t_tensor = t_state[_teacher_key(key, mapping)]
        if t_tensor.shape != s_tensor.shape:
            raise InvalidParameterError(
                f"{_WHERE}: the student's tensor {key!r} has shape {tuple(s_tensor.shape)} but the teacher's "
                f"{_teacher_key(key, mapping)!r} has {tuple(t_tensor.shape)}: the student is not a shallower "
                f"copy of the teacher. Give the student the teacher's widths and kernel sizes."
            )


def _container(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model
