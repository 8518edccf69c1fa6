"""Safe weight loading: safetensors, or ``torch.load(weights_only=True)``; never full unpickling.

A pickle can run arbitrary code when it is loaded, so a weight file that needs more than tensors,
dicts and plain numbers to unpickle is refused with a message saying how to convert it to
safetensors in a trusted environment. State dicts that do not fit a model are refused with the
first missing key, the first unexpected key and the first shape mismatch (both shapes).
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # common checkpoint layouts

_CONVERT_HINT = (
    "To convert a file you trust, run in a trusted environment:\n"
    "    import torch; from safetensors.torch import save_file\n"
    "    sd = torch.load(PATH, weights_only=False)  # only for files you trust\n"
    "    sd = sd.get('state_dict', sd) if isinstance(sd, dict) else sd.state_dict()\n"
    "    save_file({k: v.contiguous() for k, v in sd.items()}, 'weights.safetensors')\n"
    "and load 'weights.safetensors' instead."
)


def _check_file(path: Any, where: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise ValueError(f"The 'path' parameter of {where} must be a file path (str or Path). Got {type(path).__name__} instead.")
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"The weights file {str(p)!r} does not exist. Check the path.")
    if not p.is_file():
        raise ValueError(f"The weights path {str(p)!r} is not a file (a directory?). Pass the weights file itself.")
    return p


def _load_safetensors(p: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file
    try:
        return load_file(str(p), device="cpu")
    except Exception as e:  # SafetensorError: bad header, truncated data
        raise ValueError(f"The weights file {str(p)!r} is not a readable safetensors file: it may be corrupt, "
                         f"truncated or in another format ({e}).") from None


def _load_torch(p: Path) -> Any:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e)) or re.search(r"Unsupported global: (\S+)", str(e))
        if found:
            raise ValueError(
                f"Refused to load {str(p)!r}: it is a pickle that needs full unpickling (it refers to "
                f"{found.group(1)}), which can run arbitrary code. Only safetensors files, or PyTorch files that "
                f"load with torch.load(weights_only=True) (tensors in plain dicts), are accepted.\n{_CONVERT_HINT}"
            ) from None
        raise ValueError(f"The weights file {str(p)!r} could not be read as a PyTorch weights file: it may be corrupt "
                         f"or in another format ({str(e).splitlines()[-1] if str(e) else type(e).__name__}).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"The weights file {str(p)!r} could not be read: it may be corrupt or truncated "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__}).") from None


def _as_state_dict(obj: Any, p: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:  # {"state_dict": {...}, "epoch": 3} checkpoints
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"The weights file {str(p)!r} must hold a state dict (a non-empty mapping from parameter "
                         f"names to tensors). Got {type(obj).__name__} instead.")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"The weights file {str(p)!r} must map parameter names to tensors. Entry {bad[0]!r} holds "
                         f"{type(obj[bad[0]]).__name__} instead.")
    return dict(obj)


def load_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a weights file without running code from it.

    ``.safetensors`` files are read by safetensors; ``.pt``, ``.pth``, ``.bin`` and ``.ckpt`` only by
    ``torch.load(weights_only=True)``. A file that needs full unpickling is refused, with how to
    convert it to safetensors. A checkpoint dict that wraps the weights under ``state_dict``,
    ``model_state_dict`` or ``model`` is unwrapped. Tensors are returned on the CPU.

    Raises ValueError for a missing, corrupt, pickled-object or otherwise unreadable file.
    """
    p = _check_file(path, "load_state_dict")
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        obj: Any = _load_safetensors(p)
    elif suffix in TORCH_SUFFIXES:
        obj = _load_torch(p)
    else:
        raise ValueError(f"The 'path' parameter of load_state_dict must name a {SAFETENSORS_SUFFIXES[0]} file "
                         f"(or {', '.join(TORCH_SUFFIXES)} loadable with weights_only=True). Got {p.name!r} instead.")
    return _as_state_dict(obj, p)


def state_dict_mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """A plain-English description of how ``state`` fails to fit ``model``, or None if it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [(k, tuple(expected[k].shape), tuple(state[k].shape)) for k in expected
              if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) of the model are missing from the weights, the first is {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} key(s) in the weights are not in the model, the first is {unexpected[0]!r}")
    if shapes:
        k, want, got = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch(es), the first is {k!r}: the model expects {list(want)}, "
                     f"the weights have {list(got)}")
    hint = ""
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hint = " The weights' keys start with 'module.' (saved from DataParallel): strip that prefix."
    elif shapes:
        hint = " Check that the architecture (widths, class count) matches the one the weights were saved from."
    return "; ".join(parts) + "." + hint


def apply_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """Load ``state`` into ``model`` strictly and return the model.

    Raises ValueError naming the first missing key, the first unexpected key and the first shape
    mismatch (with the model's and the weights' shapes) when the state dict does not fit.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"The 'model' parameter of apply_state_dict must be a torch.nn.Module. Got {type(model).__name__} instead.")
    if not isinstance(state, Mapping):
        raise ValueError(f"The 'state' parameter of apply_state_dict must be a mapping from names to tensors. "
                         f"Got {type(state).__name__} instead.")
    problem = state_dict_mismatch(model, state)
    if problem:
        raise ValueError(f"The weights do not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)
    return model


def save_state_dict(model_or_state: nn.Module | Mapping[str, Tensor], path: str | Path) -> Path:
    """Write a model's state dict (or a state dict) as a safetensors file; returns the path.

    Tied weights (one tensor under two names) are stored once per name as separate copies.
    """
    from safetensors.torch import save_file
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"The 'path' parameter of save_state_dict must end in .safetensors. Got {p.name!r} instead.")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(p))
    return p
