"""Which teacher modules generate which student module in a weight-distillation run (§14.2).

A model's *units* are its top-level children that hold parameters, in definition order (the sample
CNNs: conv1 … convK, head); the last unit is the head, the others the body. Rules (`grouping`):

    stride: §14.2's G_i = {k·i, …, k·i + k − 1}, k = L_t / L_s over the bodies (every group's teacher
            units must hold tensors of one shape); head ← head
    spread: k = 1, student body unit i ← teacher body unit j_i = rint(i·(L_t − 1)/(L_s − 1)) (the
            layer-subset rule of §14.2); head ← head
    auto:   stride when it fits, else spread (the sample pairs: digits 3 → 2 stages does not divide,
            shapes 4 → 2 changes width inside a group, so both get spread: conv1 ← conv1, conv2 ← conv3
            or conv4, head ← head)

Explicit groups name modules: {student_module: "teacher_a+teacher_b"}. Each parameter `n` of a
student module is generated from the parameter `n` of every teacher module of its group; student
parameters outside every group are trained as they are (phase 1) and copied (phase 2).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.validation import InvalidParameterError

GROUPINGS = ("auto", "stride", "spread")
FIX = (
    "Name the groups: params={'groups': {'student_module': 'teacher_module+teacher_module', ...}} "
    "(each student module's tensors are generated from the same-named tensors of its teacher modules)."
)


def units(model: nn.Module) -> list[str]:
    """The model's top-level children that hold parameters, in definition order."""
    return [n for n, m in model.named_children() if any(True for _ in m.parameters())]


def _shapes(model: nn.Module, unit: str) -> dict[str, tuple]:
    return {n: tuple(p.shape) for n, p in model.get_submodule(unit).named_parameters()}


def _stride(t_body: list[str], s_body: list[str], teacher: nn.Module) -> dict[str, list[str]] | None:
    if not s_body or len(t_body) % len(s_body):
        return None
    k = len(t_body) // len(s_body)
    out = {s: t_body[k * i : k * i + k] for i, s in enumerate(s_body)}
    one_shape = all(len({str(_shapes(teacher, t)) for t in g}) == 1 for g in out.values())
    return out if one_shape else None


def rule_groups(teacher: nn.Module, student: nn.Module, grouping: str = "auto") -> dict[str, list[str]]:
    """{student unit: [teacher units]} by the rule `grouping` (see the module doc); raises with the fix."""
    if grouping not in GROUPINGS:
        raise InvalidParameterError(f"'grouping' must be one of {GROUPINGS}. Got {grouping!r}.")
    t_units, s_units = units(teacher), units(student)
    if len(t_units) < 2 or len(s_units) < 2:
        raise InvalidParameterError(
            f"weight_distill's grouping rule needs models with a body and a head (top-level modules with "
            f"parameters); got teacher {t_units} and student {s_units}. {FIX}"
        )
    t_body, s_body = t_units[:-1], s_units[:-1]
    groups = _stride(t_body, s_body, teacher) if grouping in ("auto", "stride") else None
    if groups is None and grouping == "stride":
        raise InvalidParameterError(
            f"§14.2's stride grouping needs a teacher body depth that is a multiple of the student's, with one "
            f"tensor shape per group; got teacher {t_body} and student {s_body}. Use grouping='spread', or: {FIX}"
        )
    if groups is None:
        if len(s_body) > len(t_body):
            raise InvalidParameterError(
                f"The student's body ({s_body}) is deeper than the teacher's ({t_body}): no teacher unit is left "
                f"for some student units. {FIX}"
            )
        idx = layer_subset_indices(len(t_body), len(s_body), "spread")
        groups = {s: [t_body[j]] for s, j in zip(s_body, idx)}
    return {**groups, s_units[-1]: [t_units[-1]]}


def parse_groups(groups: Mapping[str, str]) -> dict[str, list[str]]:
    """{student module: "t_a+t_b"} (the method's `groups` parameter) -> {student module: [t_a, t_b]}."""
    out = {s: [t.strip() for t in str(ts).split("+") if t.strip()] for s, ts in groups.items()}
    empty = [s for s, ts in out.items() if not ts]
    if empty:
        raise InvalidParameterError(f"The group of {empty[0]!r} names no teacher module. {FIX}")
    return out


def tensor_groups(
    teacher: nn.Module, student: nn.Module, module_groups: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """{student tensor: [teacher tensors]} of module groups: parameter n of a student module from the
    parameter n of each of its teacher modules. Raises naming a missing module or tensor, with the fix."""
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    out: dict[str, list[str]] = {}
    for s, ts in module_groups.items():
        for name, mods, who in ((s, s_mods, "student"), *((t, t_mods, "teacher") for t in ts)):
            if name not in mods or name == "":
                raise InvalidParameterError(
                    f"weight_distill: the {who} has no module {name!r} (its top-level modules with parameters: "
                    f"{units(student if who == 'student' else teacher)}). {FIX}"
                )
        for n in _shapes(student, s):
            missing = [t for t in ts if n not in _shapes(teacher, t)]
            if missing:
                raise InvalidParameterError(
                    f"weight_distill: teacher module {missing[0]!r} has no tensor {n!r} for student module {s!r} "
                    f"(the modules differ in structure). {FIX}"
                )
            out[f"{s}.{n}"] = [f"{t}.{n}" for t in ts]
    return out
