"""The pair registry: teacher/student pairs by name, registered by the packages that own them.

    from kdcore.pairs import register_pair, load_registered_pair
    register_pair("mine", "mypkg.models:make_pair", description="my teacher and student")
    pair = load_registered_pair("mine")

kdcore names no package here. Pairs arrive three ways:

- a call to `register_pair(name, loader)`: the loader is a callable returning a `Pair`, or a
  "package.module:factory" string imported when the pair is first loaded;
- the entry-point group ``kdworkbench.pairs``: each entry point is a callable, taking no argument,
  that calls `register_pair`. The group is read once, the first time a name is looked up that is
  not registered yet (or the registered pairs are listed). sample_models registers its pairs so
  (pyproject.toml), and `import sample_models` registers them too;
- `resolve_pair("package.module:factory")`: a factory returning a Pair, with no registration.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from kdcore.pair import Pair

ENTRY_POINT_GROUP = "kdworkbench.pairs"
Loader = Callable[[], Any] | str


@dataclass(frozen=True)
class PairEntry:
    """One registered pair."""

    name: str  # the name runs and the CLI use ("digits")
    loader: Loader  # () -> Pair, or "package.module:factory"
    recipe: Any = None  # a kdcore.jobs.recipes.Recipe: job settings for the fields a user does not set
    description: str = ""  # one line for menus and error messages
    source: str = ""  # the module that registered it


_REGISTRY: dict[str, PairEntry] = {}
_LOCK = threading.RLock()
_DISCOVERY: dict[str, Any] = {"done": False, "found": 0, "errors": []}


def _error(message: str) -> Exception:
    from kdcore.validation import (
        InvalidParameterError,  # imported here: it imports torch
    )

    return InvalidParameterError(message)


def _source_of(loader: Loader) -> str:
    if isinstance(loader, str):
        return loader.partition(":")[0]
    return str(getattr(getattr(loader, "func", loader), "__module__", "") or "")


def register_pair(name: str, loader: Loader, *, recipe: Any = None, description: str = "") -> PairEntry:
    """Register a pair under `name`; returns its entry.

    name:        a non-empty name without ':' (':' marks a "module:factory" pair)
    loader:      a callable with no argument returning a `kdcore.pairs.Pair`, or a
                 "package.module:factory" string naming one (imported on first load)
    recipe:      optional, a kdcore.jobs.recipes.Recipe (or a mapping of its fields): the job settings
                 the CLI and the Distill form use for the fields the user does not set
                 (`kdcore.jobs.recipes.pair_recipe`); without one, jobs run on JobConfig's defaults
    description: optional one-line description

    Registering a name again from the same module replaces the entry (so registration may run
    twice); a name another module registered is refused.
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise _error(
            f"The 'name' parameter of register_pair must be a non-empty string without ':'. Got {name!r} instead."
        )
    if isinstance(loader, str):
        if not _is_factory_path(loader):
            raise _error(
                f"The 'loader' parameter of register_pair must be a callable or a 'package.module:factory' "
                f"string. Got {loader!r} instead."
            )
    elif not callable(loader):
        raise _error(
            f"The 'loader' parameter of register_pair must be a callable returning a Pair, or a "
            f"'package.module:factory' string. Got {type(loader).__name__} instead."
        )
    entry = PairEntry(name, loader, recipe, str(description or ""), _source_of(loader))
    with _LOCK:
        old = _REGISTRY.get(name)
        if old is not None and old.source != entry.source:
            raise _error(
                f"The pair name {name!r} is already registered by {old.source or 'another module'}; "
                f"{entry.source or 'this module'} cannot register it again. Pick another name."
            )
        _REGISTRY[name] = entry
    return entry


def unregister_pair(name: str) -> None:
    """Forget a registered pair (no error when it is not registered)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def registered_pairs() -> dict[str, PairEntry]:
    """Every registered pair by name, in registration order (entry points read first)."""
    discover_pairs()
    with _LOCK:
        return dict(_REGISTRY)


def discover_pairs(*, force: bool = False) -> int:
    """Call every entry point of the group `kdworkbench.pairs` (once per process unless `force`);
    returns how many entry points were found. A broken one is skipped and reported by the
    unknown-pair message."""
    with _LOCK:
        if _DISCOVERY["done"] and not force:
            return int(_DISCOVERY["found"])
        found, errors = 0, []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found += 1
            try:
                ep.load()()
            except Exception as exc:
                errors.append(f"{ep.name} = {ep.value}: {type(exc).__name__}: {exc}")
        _DISCOVERY.update(done=True, found=found, errors=errors)
        return found


def get_pair_loader(name: str) -> Callable[[], Any]:
    """The loader of a registered pair (a "module:factory" loader is imported here)."""
    with _LOCK:
        entry = _REGISTRY.get(name)
    if entry is None:
        discover_pairs()
        with _LOCK:
            entry = _REGISTRY.get(name)
    if entry is None:
        raise _error(unknown_pair_message(name))
    if isinstance(entry.loader, str):
        return import_factory(entry.loader, what=f"the loader of pair {name!r}")
    return entry.loader


def load_registered_pair(name: str) -> Pair:
    """The Pair registered as `name` (loaded by its loader; loaders may cache)."""
    return _checked_pair(get_pair_loader(name)(), f"the loader of pair {name!r}")


def resolve_pair(name: str) -> Pair:
    """A Pair from a registered name, or from "package.module:factory" (a factory returning a Pair)."""
    if not isinstance(name, str) or not name.strip():
        raise _error(
            f"The 'pair' parameter must be a registered pair name or 'package.module:factory'. Got {name!r} instead."
        )
    if ":" in name:
        return _checked_pair(import_factory(name, what=f"the 'pair' {name!r}")(), f"the factory {name!r}")
    return load_registered_pair(name)


def import_factory(path: str, *, what: str) -> Callable[[], Any]:
    """The callable named by "package.module:factory" (imported now)."""
    if not _is_factory_path(path):
        raise _error(f"{what[0].upper()}{what[1:]} must be 'package.module:factory'. Got {path!r} instead.")
    module, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise _error(
            f"{what[0].upper()}{what[1:]} names a factory that cannot be imported ({exc}). "
            f"Expected 'package.module:function' returning a Pair."
        ) from None
    if not callable(factory):
        raise _error(f"{what[0].upper()}{what[1:]} names {path!r}, which is not callable.")
    _check_no_arguments(factory, path, what)
    return factory


def _check_no_arguments(factory: Callable[..., Any], path: str, what: str) -> None:
    """A factory is called with no arguments: one that needs some is refused by name."""
    import inspect

    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise _error(
            f"{what[0].upper()}{what[1:]} names {path!r}, which cannot be called without arguments ({exc}). "
            f"Expected a function taking no arguments and returning a Pair."
        ) from None
    except ValueError:
        pass  # no signature (a builtin): call it and see


def _is_factory_path(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep and module.strip() and attr.strip() and ":" not in attr)


def _checked_pair(pair: Any, what: str) -> Pair:
    if not isinstance(pair, Pair):
        raise _error(f"{what[0].upper()}{what[1:]} must return a kdcore.pairs.Pair. Got {type(pair).__name__} instead.")
    return pair


def unknown_pair_message(name: str) -> str:
    """Why `name` is not a pair: the registered ones, the closest match, and how to register one."""
    with _LOCK:
        names = list(_REGISTRY)
    known = ", ".join(names) if names else "none"
    lines = [
        f"The 'pair' parameter must be a registered pair or 'package.module:factory'. Got {name!r} instead.",
        f"Registered pairs: {known}.",
    ]
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
    if close:
        lines.append(f"Did you mean {close[0]!r}?")
    lines.append(
        f"Register a pair with kdcore.pairs.register_pair(name, loader), from a package through the "
        f"entry-point group '{ENTRY_POINT_GROUP}', or pass 'package.module:factory'."
    )
    if not _DISCOVERY["found"]:
        lines.append(
            f"No installed package declares the entry-point group '{ENTRY_POINT_GROUP}': install the "
            f"project with `pip install -e .` (from its folder) to register the sample pairs."
        )
    lines.extend(f"An entry point failed: {e}" for e in _DISCOVERY["errors"])
    return "\n".join(lines)
