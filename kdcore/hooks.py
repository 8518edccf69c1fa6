"""Activation capture by forward hooks, always removed (CONVENTIONS.md §5).

`capture_features` registers one forward hook per named layer inside a context manager and
removes every hook in ``finally``, so no hook outlives the block even when the forward pass
raises. The pattern is Captum's (Kokhlikyan et al., "Captum: A unified and generic model
interpretability library for PyTorch", arXiv:2009.07896): register in ``try``, remove in
``finally``.

Two uses:
- analysis (``detach=True``): each feature is detached, copied and moved to the CPU, so later
  in-place operations of the model (``ReLU(inplace=True)``, ``out += identity``) cannot change it;
- training losses (``detach=False``): each feature stays in the autograd graph, on its device.

A hook records only forward passes run by the thread that opened the context, so two sessions
capturing from one shared model at the same time never see each other's activations.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

_HOOK_MARK = "_kdwb_capture_hook"  # attribute set on our hook functions (see strip_capture_hooks)


def _first_tensor(output: Any) -> Tensor | None:
    """The tensor a layer produced: itself, the first tensor of a tuple/list, or a model output's
    ``last_hidden_state`` (else its first tensor value)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("last_hidden_state"), Tensor):
            return output["last_hidden_state"]
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def resolve_layers(model: nn.Module, layers: Any, *, where: str = "capture_features") -> dict[str, nn.Module]:
    """Map each requested layer name to its submodule, in the order asked, without duplicates.

    Raises ValueError for a name that is not a submodule of ``model``, listing the closest names.
    """
    if isinstance(layers, str) or not isinstance(layers, Sequence) and not isinstance(layers, (set, frozenset)):
        hint = f" Wrap a single name in a list: [{layers!r}]." if isinstance(layers, str) else ""
        raise ValueError(
            f"The 'layers' parameter of {where} must be a list of layer names. "
            f"Got {type(layers).__name__} {layers!r} instead.{hint}"
        )
    modules = dict(model.named_modules())
    modules.pop("", None)  # the root's output is the logits: use logits() for it
    resolved: dict[str, nn.Module] = {}
    for name in layers:
        if not isinstance(name, str) or name not in modules:
            close = difflib.get_close_matches(str(name), list(modules), n=5, cutoff=0.5)
            if close:
                options = f"Closest names: {close}."
            else:
                first = list(modules)[:8]
                options = f"Available names start with {first}" + (" ..." if len(modules) > 8 else "") + "."
            raise ValueError(
                f"The 'layers' parameter of {where} names {name!r}, which is not a layer of "
                f"{type(model).__name__}. {options} See layer_names() for all of them."
            )
        resolved[name] = modules[name]
    return resolved


def _make_hook(name: str, store: dict[str, Tensor], detach: bool, owner: int) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() != owner:
            return  # another session's forward pass through the same shared model
        t = _first_tensor(output)
        if t is None:
            return
        if detach:
            t = t.detach()
            t = t.clone() if t.device.type == "cpu" else t.to("cpu")  # [B, ...] a copy, safe from in-place ops
        store[name] = t  # a layer called twice keeps its last output

    setattr(hook, _HOOK_MARK, True)
    return hook


@contextmanager
def capture_features(model: nn.Module, layers: Sequence[str], *, detach: bool = True) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of named layers during the forward passes run inside the block.

    Args:
        model: the module whose submodules are hooked (its ``named_modules()`` names).
        layers: submodule names, e.g. ``["layer1", "blocks.3"]``.
        detach: True for analysis (detached copies on the CPU); False for training losses (kept in
            the autograd graph, on the model's device).

    Yields:
        A dict ``{layer name: output tensor}`` that the forward pass fills. A layer's output is the
        tensor it returns, or the first tensor of a returned tuple or model output.

    Every hook is removed when the block ends, also when it raises. Unknown layer names raise
    ValueError listing close matches.

    Example::

        with capture_features(model, ["layer1"]) as feats:
            model(x)
        feats["layer1"]  # [B, C, H, W]
    """
    targets = resolve_layers(model, layers)
    store: dict[str, Tensor] = {}
    handles = []
    owner = threading.get_ident()
    try:
        for name, module in targets.items():
            handles.append(module.register_forward_hook(_make_hook(name, store, detach, owner)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def count_capture_hooks(model: nn.Module) -> int:
    """How many of our capture hooks are registered on ``model`` (0 outside a capture block)."""
    return sum(getattr(h, _HOOK_MARK, False) for m in model.modules() for h in m._forward_hooks.values())


def strip_capture_hooks(model: nn.Module) -> nn.Module:
    """Remove capture hooks copied into ``model`` (a deep copy taken while another thread was
    capturing from the original carries that thread's hooks along). Other hooks are kept."""
    for m in model.modules():
        for key in [k for k, h in m._forward_hooks.items() if getattr(h, _HOOK_MARK, False)]:
            del m._forward_hooks[key]
            for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
                getattr(m, extra, {}).pop(key, None)
    return model
