"""Schedules on the loss itself (methods/13 §13.3, issue #16 item 3): a value of the objective —
the temperature, KD's λ, or the weight of a loss term — that changes over the run.

A job's `schedules` maps a *target* to a schedule spec (a dict):

    {"temperature": {"kind": "cosine", "start": 8, "end": 2},
     "weight:dkd":  {"kind": "warmup", "start": 0, "end": 1, "length": 20, "unit": "epoch"}}

Targets: "temperature" (every term whose method takes a temperature), "lam" (every term that takes λ),
"weight:<method>" (the weight of the objective's terms of that method, e.g. weight:dkd) and
"weight:ce" (the job's hard-label CE weight). The scheduled value *replaces* the configured one.

Kinds, with t counted from 0 in the schedule's unit ("step": the optimiser step; "epoch": the epoch − 1)
and n the run's total in that unit, p = t / (n − 1) (0 when n = 1):

    constant  v = start
    linear    v = start + (end − start)·p
    cosine    v = end + ½(start − end)·(1 + cos(π·p))
    warmup    v = start + (end − start)·min((t + 1)/length, 1)     (then constant at end)
    step      v = start while t < length, then end

`warmup` with start 0, end 1, unit epoch is mdistiller's DKD warm-up w(e) = min(e/E_w, 1) (§13.3c).
Every value lies between start and end, so checking both against the target's range (the method
table's Param range) checks the whole schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from kdcore.methods import get_method
from kdcore.methods.params import Param

KINDS = ("constant", "linear", "cosine", "warmup", "step")
UNITS = ("step", "epoch")
FIXED_TARGETS = ("temperature", "lam")
WEIGHT_PREFIX = "weight:"
_WEIGHT = Param("weight", 1.0, "a loss term's weight", low=0.0)  # the range of LossTerm.weight and ce_weight


@dataclass(frozen=True)
class Schedule:
    """One schedule: `value(t, total)` (see the module docstring for the kinds)."""

    kind: str = "constant"  # one of KINDS
    start: float = 1.0  # value at t = 0
    end: float | None = None  # value at the last step/epoch (None: = start)
    length: int | None = None  # warmup: the ramp's length; step: when the value switches to `end`
    unit: str = "step"  # "step" (optimiser steps from 0) or "epoch" (epochs from 0)

    @property
    def stop(self) -> float:
        return self.start if self.end is None else self.end

    def value(self, t: int, total: int) -> float:
        """The value at t (0-based, in the schedule's unit) of a run `total` units long."""
        a, b = float(self.start), float(self.stop)
        p = min(max(t / (total - 1), 0.0), 1.0) if total > 1 else 0.0
        if self.kind == "linear":
            return a + (b - a) * p
        if self.kind == "cosine":
            return b + 0.5 * (a - b) * (1.0 + math.cos(math.pi * p))
        if self.kind == "warmup":
            return a + (b - a) * min((t + 1) / int(self.length or 1), 1.0)
        if self.kind == "step":
            return a if t < int(self.length or 0) else b
        return a

    def at(self, step: int, epoch: int, total_steps: int, epochs: int) -> float:
        """The value at a run's 0-based `step` and 1-based `epoch`."""
        return self.value(step, total_steps) if self.unit == "step" else self.value(epoch - 1, epochs)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_schedule(spec: Any, where: str) -> tuple[Schedule | None, list[str]]:
    """A spec dict -> (Schedule, []), or (None, problems) naming what is wrong and the fix."""
    if isinstance(spec, Schedule):
        spec = spec.to_dict()
    if not isinstance(spec, dict):
        return None, [f"{where} must be a mapping like {{kind: cosine, start: 4, end: 1}}; got {spec!r}"]
    known = {f.name for f in fields(Schedule)}
    p = [f"{where} has unknown key {k!r} (a schedule has {', '.join(sorted(known))})" for k in spec if k not in known]
    kind = spec.get("kind", "constant")
    if kind not in KINDS:
        p.append(f"{where}.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if spec.get("unit", "step") not in UNITS:
        p.append(f"{where}.unit must be one of {', '.join(UNITS)}; got {spec.get('unit')!r}")
    for k in ("start", "end"):
        v = spec.get(k, 1.0 if k == "start" else None)
        if v is not None and not _is_number(v):
            p.append(f"{where}.{k} must be a finite number; got {v!r}")
    p += _length_problems(kind, spec.get("length"), where)
    if p:
        return None, p
    return Schedule(**spec), []


def _length_problems(kind: str, length: Any, where: str) -> list[str]:
    if kind not in ("warmup", "step"):
        return [] if length is None else [f"{where}.length is only used by kinds warmup and step; got kind {kind!r}"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        what = "the ramp's length" if kind == "warmup" else "the step or epoch at which the value switches"
        return [f"{where}.length ({what}) must be an integer >= 1 for kind {kind!r}; got {length!r}"]
    return []


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def target_params(target: str, method_names: list[str]) -> list[tuple[str, Param]]:
    """(where, Param) of every parameter a target sets in an objective of these (canonical) methods."""
    if target in FIXED_TARGETS:
        methods = [get_method(n) for n in dict.fromkeys(method_names)]
        return [(f"method '{m.name}'", m.param(target)) for m in methods if m.takes(target)]
    if target.startswith(WEIGHT_PREFIX):
        name = target[len(WEIGHT_PREFIX) :]
        if name == "ce" or name in method_names:
            return [(f"the weight of '{name}'", _WEIGHT)]
    return []


def schedule_problems(schedules: Any, method_names: list[str]) -> list[str]:
    """Every problem with a job's `schedules` for an objective of these (canonical) method names:
    unknown targets and kinds (listing the known ones), and start/end outside the target's range."""
    if not isinstance(schedules, dict):
        return [f"'schedules' must be a mapping of targets to schedules; got {type(schedules).__name__}"]
    known = [*FIXED_TARGETS, *(WEIGHT_PREFIX + n for n in dict.fromkeys([*method_names, "ce"]))]
    p: list[str] = []
    for target, spec in schedules.items():
        where = f"schedules[{target!r}]"
        sched, bad = parse_schedule(spec, where)
        p += bad
        params = target_params(str(target), method_names)
        if not params:
            p.append(
                f"{where}: the objective ({', '.join(method_names) or 'none'}) has no value {target!r} to "
                f"schedule; targets it has: {', '.join(t for t in known if target_params(t, method_names))}"
            )
        elif sched is not None:
            p += _range_problems(sched, params, where)
    return p


def _range_problems(sched: Schedule, params: list[tuple[str, Param]], where: str) -> list[str]:
    p: list[str] = []
    for who, param in params:
        for k, v in (("start", sched.start), ("end", sched.end)):
            for msg in [] if v is None else param.problems(float(v), f"{where}.{k}"):
                p.append(f"{msg} (the range of {param.name!r} of {who})")
    return p


def parse_flag(text: str) -> tuple[str, dict]:
    """The CLI's `--loss-schedule TARGET=KIND:START[:END[:LENGTH]][@epoch]` -> (target, spec dict).

    e.g. "temperature=cosine:8:2", "lam=linear:0.5:0.9@epoch", "weight:dkd=warmup:0:1:20@epoch".
    Raises ValueError saying the expected form and what was given.
    """
    form = "TARGET=KIND:START[:END[:LENGTH]][@epoch], e.g. temperature=cosine:8:2 or weight:dkd=warmup:0:1:20@epoch"
    target, sep, rest = text.partition("=")
    body, at, unit = rest.partition("@")
    parts = body.split(":")
    if not sep or not target or not parts[0] or len(parts) > 4 or (at and not unit):
        raise ValueError(f"--loss-schedule expects {form}. Got {text!r} instead.")
    try:
        nums = [float(x) for x in parts[1:3]]
        length = int(parts[3]) if len(parts) == 4 else None
    except ValueError:
        raise ValueError(f"--loss-schedule expects numbers after the kind ({form}). Got {text!r} instead.") from None
    spec: dict[str, Any] = {"kind": parts[0]}
    spec.update(zip(("start", "end"), nums))
    if length is not None:
        spec["length"] = length
    if unit:
        spec["unit"] = unit
    return target.strip(), spec


def scheduled_values(schedules: dict, step: int, epoch: int, total_steps: int, epochs: int) -> dict[str, float]:
    """{target: value} of every (valid) schedule at a 0-based step and 1-based epoch."""
    made = {t: s if isinstance(s, Schedule) else Schedule(**s) for t, s in schedules.items()}
    return {t: s.at(step, epoch, total_steps, epochs) for t, s in made.items()}


def apply_values(terms: list, ce_weight: float, values: dict[str, float]) -> tuple[list, float]:
    """(terms, ce_weight) with the scheduled values in place of the configured ones: the terms are
    new LossTerm objects (the job's own are not changed); the method steps see plain parameters."""
    from dataclasses import replace

    out = []
    for term in terms:
        params = dict(term.params)
        for key in FIXED_TARGETS:
            if key in values and key in params:
                params[key] = values[key]
        weight = values.get(WEIGHT_PREFIX + term.name, term.weight)
        out.append(replace(term, weight=float(weight), params=params))
    return out, float(values.get(WEIGHT_PREFIX + "ce", ce_weight))


def step_metrics(values: dict[str, float], terms: list, learned: Any, epoch: int) -> dict[str, float]:
    """What a step logs: `sched_<target>` for every scheduled value, and CTKD's learned temperature
    (`sched_temperature`, the T this step used) with its λ_e (`sched_ctkd_lambda`)."""
    from kdcore.methods.curricula import CTKD_KEY

    out = {f"sched_{k}": float(v) for k, v in values.items()}
    if learned is not None and CTKD_KEY in learned:
        from kdcore.losses import ctkd_lambda

        loops = next(int(t.params["loops"]) for t in terms if t.name == "ctkd")
        out["sched_temperature"] = learned[CTKD_KEY].temperature()
        out["sched_ctkd_lambda"] = ctkd_lambda(epoch, loops)
    return out
