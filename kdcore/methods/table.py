"""The method table: one `Method` entry per distillation method, registered once.

`register_method(Method(...))` adds an entry; `get_method(name_or_alias)` finds one (an unknown
name lists the known ones and the closest match). Config validation, the objectives, the CLI,
the app's Distill form and `python -m kdcore methods` all read this table.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kdcore.methods.params import KINDS, SHARED_FIELDS, Param
from kdcore.methods.step import Component, StepTensors

TASKS = ("classification", "multilabel", "causal_lm", "encoder")
_TASK_WORDS = {
    "classification": "classification",
    "multilabel": "multi-label classification",
    "causal_lm": "causal language models",
    "encoder": "encoder models",
}

StepFn = Callable[[StepTensors, dict], "list[Component]"]


@dataclass(frozen=True)
class Method:
    """One distillation method: what it is called, what it fits, what it computes and takes."""

    name: str  # canonical name (the job's `objective`)
    step: StepFn  # (batch, params) -> [(component, weight, value)]: calls `loss`
    loss: Callable | str  # the tested loss function ("module:function" loads on use)
    help: str  # one line for menus and --help
    section: str  # where the formula is specified, e.g. "METHODS.md §1"
    tasks: tuple[str, ...] = ("classification",)  # tasks it fits (TASKS)
    params: tuple[Param, ...] = ()  # its parameters, defaults, types and ranges
    aliases: tuple[str, ...] = ()  # other names that load (old config files)
    components: Callable | str | None = None  # the *_components function whose parts it logs
    also_calls: tuple[Callable | str, ...] = ()  # other tested losses it may call (variants)
    ce_default: bool = False  # hard-label CE (weight 1) is added by default
    source: str = ""  # the paper, e.g. "Hinton et al. 2015, arXiv 1503.02531"
    check: Callable[[dict, str], list[str]] | None = None  # cross-parameter rules: (params, where) -> problems
    fit: Callable[[str, dict], list[str]] | None = None  # task-specific misfits: (task, params) -> problems
    task_defaults: dict = field(default_factory=dict)  # task -> {param: default} (the form's starting values)
    task_hints: dict = field(default_factory=dict)  # task it does not fit -> why, and what to use instead
    uses_layers: bool = False  # params["layers"] maps student features to teacher features
    modules: Callable[[dict, dict, dict], dict] | None = None  # learned parts trained with the student
    #   (projectors, generators): (params, s_feats, t_feats) -> {key: nn.Module}, found in batch.projectors
    needs_attention: bool = False  # the step reads attention maps of both models
    shape_check: Callable[[dict, dict, dict], list[str]] | None = None  # (params, s_feats, t_feats) -> problems
    teacher_layers: Callable[[dict], list[str]] | None = None  # teacher layers the step reads (DGKD's guides)
    chain: bool = False  # the CLI and the app run it as a chain of runs (kdcore/jobs/chain.py)
    paced: bool = False  # the runner draws batches from a teacher-difficulty curriculum pool (methods/13 §13.3b):
    #   params start, inc, step, balance, order
    procedure: str = ""  # "module:function" running the whole job instead of the per-step loop
    #   (block-wise stones, PWKD's stages, ZSKT's generator: kdcore/jobs/procedures.py)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise _invalid(unknown_param_message(self, name))

    def takes(self, name: str) -> bool:
        return name in self.param_names

    def defaults(self, task: str | None = None) -> dict:
        """{param: default}, with the task's own defaults on top when a task is given."""
        out = {p.name: p.default for p in self.params}
        out.update(self.task_defaults.get(task, {}))
        return out

    @property
    def default_temperature(self) -> float | None:
        """T used when neither the term nor the job sets one (None: the method has no temperature)."""
        return self.param("temperature").default if self.takes("temperature") else None

    def functions(self) -> dict[str, Callable]:
        """The tested functions it calls: {"loss": fn, "components": fn, "also": [fn, ...]}."""
        out: dict[str, Any] = {"loss": _load(self.loss)}
        if self.components is not None:
            out["components"] = _load(self.components)
        out["also"] = [_load(f) for f in self.also_calls]
        return out

    def describe(self) -> dict:
        """A JSON-ready row of the table (what `python -m kdcore methods --json` prints)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "tasks": list(self.tasks),
            "help": self.help,
            "ce_default": self.ce_default,
            "default_temperature": self.default_temperature,
            "loss": _ref(self.loss),
            "components": _ref(self.components) if self.components else None,
            "section": self.section,
            "source": self.source,
            "chain": self.chain,
            "procedure": self.procedure or None,
            "params": [p.describe() for p in self.params],
        }


# ---- the registry ----------------------------------------------------------------------------------

_METHODS: dict[str, Method] = {}
_ALIASES: dict[str, str] = {}
ALIASES = MappingProxyType(_ALIASES)  # {alias: canonical name}, read-only and always current


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add a method to the table (and its aliases); returns it. `replace=True` swaps an entry of the same name."""
    _check_entry(method)
    taken = _names_taken(exclude=method.name if replace else None)
    clash = [n for n in (method.name, *method.aliases) if n in taken]
    if clash:
        raise _invalid(
            f"Cannot register method {method.name!r}: the name(s) {clash} are taken "
            f"by {sorted({_ALIASES.get(n, n) for n in clash})}. Choose other names, "
            f"or pass replace=True to swap the entry of the same name."
        )
    if replace and method.name in _METHODS:
        unregister_method(method.name)
    _METHODS[method.name] = method
    _ALIASES.update({a: method.name for a in method.aliases})
    return method


def unregister_method(name: str) -> Method:
    """Remove a method (by name or alias) and its aliases; returns the entry removed."""
    method = get_method(name)
    del _METHODS[method.name]
    for a in method.aliases:
        _ALIASES.pop(a, None)
    return method


def canonical_name(name: Any) -> str | None:
    """The canonical name of a method name or alias; None when unknown."""
    if not isinstance(name, str):
        return None
    name = _ALIASES.get(name, name)
    return name if name in _METHODS else None


def get_method(name: Any) -> Method:
    """The entry of a method name or alias; unknown names raise, listing the known ones."""
    canon = canonical_name(name)
    if canon is None:
        raise _invalid(unknown_method_message(name))
    return _METHODS[canon]


def all_methods() -> tuple[Method, ...]:
    """Every method, in registration order."""
    return tuple(_METHODS.values())


def method_names() -> tuple[str, ...]:
    return tuple(_METHODS)


def aliases() -> dict[str, str]:
    """{alias: canonical name}."""
    return dict(_ALIASES)


def methods_for(task: str) -> tuple[Method, ...]:
    """The methods that fit a task."""
    return tuple(m for m in _METHODS.values() if task in m.tasks)


def closest(name: Any, options: list[str] | tuple[str, ...]) -> str | None:
    """The closest option to a mistyped name (difflib), or None."""
    hits = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.5)
    return hits[0] if hits else None


def unknown_method_message(name: Any, what: str = "method") -> str:
    known = ", ".join(_METHODS)
    near = closest(name, list(_METHODS) + list(_ALIASES))
    hint = f" Did you mean {near!r}?" if near else ""
    return f"Unknown {what} {name!r}. Known methods: {known} (aliases: {', '.join(sorted(_ALIASES))}).{hint}"


def unknown_param_message(method: Method, name: str) -> str:
    takes = ", ".join(method.param_names) or "none"
    near = closest(name, method.param_names)
    hint = f"; did you mean {near!r}?" if near else ""
    return f"method '{method.name}' has no parameter {name!r} (it takes: {takes}){hint}"


def misfit_message(method: Method, task: str) -> str:
    """Why a method does not fit a task, with the methods that do."""
    fits = " and ".join(_TASK_WORDS.get(t, t) for t in method.tasks)
    kind = "a classification loss" if set(method.tasks) <= {"classification", "multilabel"} else f"a loss for {fits}"
    others = ", ".join(m.name for m in methods_for(task) if m.name != "ce") or "ce"
    hint = f" ({method.task_hints[task]})" if task in method.task_hints else ""
    return (
        f"objective '{method.name}' is {kind} (it fits {', '.join(method.tasks)}), but the pair's task is "
        f"'{task}' ({_TASK_WORDS.get(task, task)}){hint}: use one of {others} instead"
    )


# ---- private -----------------------------------------------------------------------------------------


def _invalid(message: str) -> Exception:
    """kdcore.validation.InvalidParameterError, imported on use (it imports torch; reading the table does not)."""
    from kdcore.validation import InvalidParameterError

    return InvalidParameterError(message)


def _names_taken(exclude: str | None) -> set[str]:
    names = set(_METHODS) | set(_ALIASES)
    if exclude in _METHODS:
        names -= {exclude, *_METHODS[exclude].aliases}
    return names


def _check_entry(m: Any) -> None:
    """An entry is complete and self-consistent; raises naming what is wrong."""
    if not isinstance(m, Method):
        raise _invalid(f"register_method takes a Method entry. Got {type(m).__name__} instead.")
    bad: list[str] = []
    if not m.name or not isinstance(m.name, str) or m.name == "sum":
        bad.append(f"name must be a non-empty string other than 'sum' (got {m.name!r})")
    if not callable(m.step):
        bad.append("step must be a function (batch, params) -> [(component, weight, value)]")
    if not m.help or not m.section:
        bad.append("help and section (where the formula is specified) must be given")
    if not m.tasks or set(m.tasks) - set(TASKS):
        bad.append(f"tasks must be a non-empty subset of {TASKS} (got {m.tasks!r})")
    names = [p.name for p in m.params]
    if len(set(names)) != len(names):
        bad.append(f"parameter names repeat: {names}")
    for p in m.params:
        if p.shared and p.name not in SHARED_FIELDS:
            bad.append(f"parameter {p.name!r} is shared but the job has no field of that name ({SHARED_FIELDS})")
        if p.kind not in KINDS:
            bad.append(f"parameter {p.name!r} has kind {p.kind!r}; known kinds: {', '.join(KINDS)}")
        elif not p.required:
            bad += p.problems(p.default, f"the default of parameter {p.name!r}")
    if bad:
        raise _invalid(f"Cannot register method {getattr(m, 'name', m)!r}: " + "; ".join(bad) + ".")


def _load(ref: Callable | str) -> Callable:
    """A function, or "module:function" imported on first use."""
    if callable(ref):
        return ref
    module, _, attr = str(ref).partition(":")
    return getattr(importlib.import_module(module), attr)


def _ref(ref: Callable | str) -> str:
    if isinstance(ref, str):
        return ref
    return f"{getattr(ref, '__module__', '?')}:{getattr(ref, '__qualname__', repr(ref))}"


# ---- a job's parameters for a method ------------------------------------------------------------------


def param_problems(method: Method, params: Any, where: str) -> list[str]:
    """Every problem with the parameters given to a method: names it does not take (listing those it
    takes), values out of range (saying the range), and the method's own cross-parameter rules."""
    if not isinstance(params, dict):
        return [f"{where} must be a mapping of parameter names to values; got {type(params).__name__}"]
    unknown = [f"{where}: {unknown_param_message(method, k)}" for k in params if k not in method.param_names]
    merged = {**method.defaults(), **{k: v for k, v in params.items() if k in method.param_names}}
    values = [msg for p in method.params for msg in p.problems(merged[p.name], f"{where}.{p.name}")]
    rules = method.check(merged, where) if method.check is not None and not values else []
    return unknown + values + rules


def resolve_params(method: Method, params: dict, shared: dict) -> dict:
    """Every parameter's value: the given one; for a shared parameter (temperature, lam) not given, the
    job's field of that name, else the default; for the others, the default."""
    out = method.defaults()
    out.update(params)
    for p in method.params:
        if p.shared and params.get(p.name) is None:
            out[p.name] = shared[p.name] if shared.get(p.name) is not None else p.default
    return out
