"""A method's parameter: name, default, type, range, one-line help, and the check of a value.

Kinds: "float", "int", "bool", "choice" (one of `choices`), "layers" (a mapping
{student_layer: teacher_layer} of layer names), "floats" / "ints" (a list of numbers, each in the
range), "names" (a list of layer names of one model, e.g. where exits go). None means "not set" (the
method decides, or does not use it); `required=True` refuses a
missing value; `shared=True` marks a parameter that a JobConfig field of the same name fills when None
(temperature, lam), so a sweep over the field reaches every method that takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KINDS = ("float", "int", "bool", "choice", "layers", "floats", "ints", "names")


@dataclass(frozen=True)
class Param:
    """One parameter of a method (see the module docstring for the kinds)."""

    name: str  # the key in a job's `params`
    default: Any  # value when not given (None: not set / the shared job field)
    help: str  # one line: what it does
    kind: str = "float"  # one of KINDS
    low: float | None = None  # range of a number (None: unbounded on that side)
    high: float | None = None
    low_open: bool = False  # the range excludes `low`
    high_open: bool = False  # the range excludes `high`
    choices: tuple = ()  # kind "choice": the values allowed
    required: bool = False  # a value must be given (no usable default)
    shared: bool = False  # a JobConfig field of the same name fills it when None

    def range_text(self) -> str:
        """The allowed values in words: "[0, 1]", "(0, inf)", "one of a, b", "true or false", ..."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "bool":
            return "true or false"
        if self.kind == "layers":
            return "a mapping {student_layer: teacher_layer} of layer names"
        if self.kind == "names":
            return "a list of layer names"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        what = {"float": "a number", "int": "an integer", "floats": "a list of numbers", "ints": "a list of integers"}
        each = " each" if self.kind in ("floats", "ints") else ""
        return f"{what[self.kind]}{each} in {left}{lo}, {hi}{right}"

    def problems(self, value: Any, where: str) -> list[str]:
        """What is wrong with `value` for this parameter (empty when it is fine)."""
        if value is None:
            if self.required:
                return [f"{where} is required: {self.help} ({self.range_text()})"]
            return []
        if _is_valid(self, value):
            return []
        return [f"{where} must be {self.range_text()}; got {value!r}"]

    def describe(self) -> dict:
        """A JSON-ready row: name, kind, default, range, help and flags."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "range": self.range_text(),
            "required": self.required,
            "shared": self.shared,
            "help": self.help,
        }


def temperature(default: float, help: str = "softmax temperature T") -> Param:
    """The softmax temperature T > 0, shared with the job's `temperature` field."""
    return Param("temperature", default, help, low=0.0, low_open=True, shared=True)


def choice(name: str, default: Any, help: str, choices: tuple) -> Param:
    """A parameter that takes one of `choices` (kind "choice")."""
    return Param(name, default, help, kind="choice", choices=choices)


def flag(name: str, default: bool, help: str) -> Param:
    """A true/false parameter (kind "bool")."""
    return Param(name, default, help, kind="bool")


def lam(default: float, help: str = "weight λ of the KL term (CE gets 1 − λ)") -> Param:
    """The weight λ in [0, 1] of the distillation term, shared with the job's `lam` field."""
    return Param("lam", default, help, low=0.0, high=1.0, shared=True)


def _is_number(v: Any, integer: bool) -> bool:
    if isinstance(v, bool):
        return False
    if integer:
        return isinstance(v, int)
    return isinstance(v, (int, float)) and math.isfinite(float(v))


def _in_range(p: Param, v: float) -> bool:
    if p.low is not None and not (v > p.low if p.low_open else v >= p.low):
        return False
    return p.high is None or (v < p.high if p.high_open else v <= p.high)


def _is_valid(p: Param, v: Any) -> bool:
    if p.kind in ("float", "int"):
        return _is_number(v, p.kind == "int") and _in_range(p, v)
    if p.kind in ("floats", "ints"):
        return (
            isinstance(v, (list, tuple))
            and len(v) > 0
            and all(_is_number(x, p.kind == "ints") and _in_range(p, x) for x in v)
        )
    if p.kind == "bool":
        return isinstance(v, bool)
    if p.kind == "choice":
        return v in p.choices
    if p.kind == "names":
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) and x for x in v)
    if p.kind == "layers":
        return (
            isinstance(v, dict)
            and len(v) > 0
            and all(isinstance(k, str) and isinstance(t, str) and k and t for k, t in v.items())
        )
    raise ValueError(f"Parameter {p.name!r} has an unknown kind {p.kind!r}; known kinds: {', '.join(KINDS)}.")


SHARED_FIELDS = ("temperature", "lam")  # JobConfig fields a shared parameter may stand for
TEXT_KINDS = ("layers", "floats", "ints", "names")  # kinds typed as text in a form


def parse_text(param: Param, text: str) -> Any:
    """A form's text for a layers/floats/ints parameter -> its value (None when empty).

    layers: "conv1: conv1, conv2: conv3" (braces optional); floats/ints: "1, 2.5"; names: "conv1, conv2".
    Raises ValueError
    naming the parameter, the expected form and what was typed.
    """
    if param.kind not in TEXT_KINDS:
        raise ValueError(
            f"Parameter {param.name!r} (kind {param.kind!r}) is not typed as text; text kinds: {', '.join(TEXT_KINDS)}."
        )
    text = (text or "").strip().strip("{}[]()").strip()
    if not text:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return _parse_items(param.kind, items)
    except ValueError:
        example = {"layers": "conv1: conv1, conv2: conv3", "names": "conv1, conv2"}.get(param.kind, "1, 2, 3")
        raise ValueError(
            f"The '{param.name}' parameter must be {param.range_text()}, typed like {example!r}. Got {text!r} instead."
        ) from None


def _parse_items(kind: str, items: list[str]) -> Any:
    if kind == "names":
        return [x.strip("'\"") for x in items]
    if kind != "layers":
        return [int(x) if kind == "ints" else float(x) for x in items]
    pairs = [[part.strip().strip("'\"") for part in item.split(":")] for item in items]
    if any(len(pr) != 2 or not all(pr) for pr in pairs):
        raise ValueError("a layer pair is not 'student: teacher'")
    return {a: b for a, b in pairs}
