"""A user's own architecture: ``"package.module:factory"`` plus a safetensors state dict (or, with no
weights file, the factory's own initialisation: a student that starts fresh or from its teacher)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.module import wrap
from kdcore.weights import apply_state_dict, load_state_dict

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_factory(
    spec: str,
    weights_path: str | Path | None = None,
    *,
    kind: str = "classifier",
    factory_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    **wrap_kwargs: Any,
) -> ModelAdapter:
    """Build a model with ``factory(**factory_kwargs)`` and load its weights strictly (none: the
    factory's own initialisation, under the caller's torch seed).

    Args:
        spec: ``"package.module:factory"``; the module is imported (it must be importable, e.g. on
            PYTHONPATH) and the factory called to build the architecture.
        weights_path: a ``.safetensors`` state dict (or a ``.pt``/``.pth`` that loads with
            ``weights_only=True``); None loads no weights (the adapter's default name says
            "no weights: factory init").
        kind: "classifier" or "causal_lm".
        factory_kwargs: keyword arguments of the factory.
        name: display name (default: the spec).
        **wrap_kwargs: passed to `wrap` (layers, cam_layer, output_size, example_input).

    Raises ValueError for a malformed spec, a module or factory that cannot be found, a factory
    that returns no module, an unreadable weights file, or weights that do not fit the model (the
    first mismatched key and both shapes are named).
    """
    _check_args(spec, factory_kwargs)
    module_name, factory_name = spec.split(":")
    # read first: a bad file fails before any user code runs
    state = None if weights_path is None else load_state_dict(weights_path)
    factory = _find_factory(module_name, factory_name)
    try:
        model = factory(**dict(factory_kwargs or {}))
    except TypeError as e:
        raise ValueError(f"Calling {spec} with factory_kwargs={dict(factory_kwargs or {})} failed: {e}") from e
    if not isinstance(model, nn.Module):
        raise ValueError(f"The factory {spec} must return a torch.nn.Module. It returned {type(model).__name__}.")
    if state is not None:
        apply_state_dict(model, state)
    model.eval()
    default_name = spec if state is not None else f"{spec} (no weights: factory init)"
    return wrap(model, name=name or default_name, kind=kind, **wrap_kwargs)


def _check_args(spec: Any, factory_kwargs: Any) -> None:
    """Refuses a spec not shaped 'package.module:factory' and factory_kwargs that are not a mapping."""
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ValueError(
            f"The 'spec' parameter of load_factory must look like 'package.module:factory'. Got {spec!r} instead."
        )
    if factory_kwargs is not None and not isinstance(factory_kwargs, Mapping):
        raise ValueError(
            f"The 'factory_kwargs' parameter of load_factory must be a dict. Got {type(factory_kwargs).__name__} instead."
        )


def _find_factory(module_name: str, factory_name: str) -> Callable[..., Any]:
    """The callable `factory_name` of the imported module `module_name`."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"Could not import {module_name!r} for load_factory ({e}). Make sure the module is on PYTHONPATH."
        ) from e
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"Module {module_name!r} has no callable named {factory_name!r}.")
    return factory
