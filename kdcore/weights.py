"""Safe weight loading: safetensors, or ``torch.load(weights_only=True)``; never full unpickling.

A pickle can run arbitrary code when it is loaded, so a weight file that needs more than tensors,
dicts and plain numbers to unpickle is refused with a message saying how to convert it to
safetensors in a trusted environment. State dicts that do not fit a model are refused with the
first missing key, the first unexpected key and the first shape mismatch (both shapes).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")  # common checkpoint layouts

_MAX_PICKLES = 4  # a legacy torch.save file is a few pickles in a row (magic, version, sys info, object)


def _convert_recipe(p: Path) -> str:
    """Python lines that turn the trusted pickle at `p` into a safetensors file next to it."""
    out = p.with_suffix(".safetensors")
    return (
        "Convert it to safetensors like this, in a trusted environment and only if you trust the file "
        "(unpickling runs the code inside it):\n"
        "    import torch\n"
        "    from safetensors.torch import save_file\n"
        f"    obj = torch.load({str(p)!r}, map_location='cpu', weights_only=False)\n"
        "    if isinstance(obj, dict):  # a checkpoint: the weights are often under one of these keys\n"
        "        obj = next((obj[k] for k in ('state_dict', 'model_state_dict', 'model') if k in obj), obj)\n"
        "    sd = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj\n"
        "    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()\n"
        f"               if isinstance(v, torch.Tensor)}}, {str(out)!r})\n"
        f"and load {str(out)!r} instead."
    )


def _check_file(path: Any, where: str) -> Path:
    if not isinstance(path, (str, Path)):
        raise ValueError(
            f"The 'path' parameter of {where} must be a file path (str or Path). Got {type(path).__name__} instead."
        )
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
        raise ValueError(
            f"The weights file {str(p)!r} is not a readable safetensors file: it may be corrupt, "
            f"truncated or in another format ({e})."
        ) from None


def _load_torch(p: Path) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing them
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — UnpicklingError, RuntimeError, EOFError, KeyError ... from a bad file
        refs = _pickle_refs(p)
        if isinstance(e, pickle.UnpicklingError) and refs is not None:
            raise ValueError(_refusal(p, refs)) from None
        raise ValueError(
            f"The weights file {str(p)!r} could not be read as a PyTorch weights file: it may be corrupt, "
            f"truncated or in another format ({_why(e)})."
        ) from None


def _why(e: Exception) -> str:
    if isinstance(e, pickle.UnpicklingError):
        return "it holds no complete pickle"
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _refusal(p: Path, refs: list[str]) -> str:
    what = (
        f"it refers to {', '.join(refs[:3])}"
        if refs
        else "it uses pickle features that torch.load(weights_only=True) does not read"
    )
    return (
        f"Refused to load {str(p)!r}: it is a pickle that needs full unpickling ({what}), which can run "
        f"arbitrary code, so it was not opened. Only .safetensors files, or PyTorch files that "
        f"torch.load(weights_only=True) reads (tensors in plain dicts), are accepted.\n{_convert_recipe(p)}"
    )


def _pickle_refs(p: Path) -> list[str] | None:
    """The globals (module.name) a PyTorch file's pickle refers to beyond what weights_only allows,
    read without running anything; None when the file holds no complete pickle (corrupt, truncated)."""
    try:
        if zipfile.is_zipfile(p):  # torch.save's zip layout: <archive>/data.pkl
            with zipfile.ZipFile(p) as zf:
                name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
                return _not_allowed(_scan_pickles(io.BytesIO(zf.read(name)), 1))
        with open(p, "rb") as f:  # a plain pickle, or the legacy layout's pickles in a row
            return _not_allowed(_scan_pickles(f, _MAX_PICKLES))
    except Exception:  # noqa: BLE001 — no complete pickle: the caller reports a corrupt file
        return None


_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)


def _scan_pickles(f: IO[bytes], most: int) -> list[str]:
    """Globals named by up to `most` pickles in a row in `f` (opcodes only, never executed).

    Raises (ValueError, EOFError ...) when the first pickle is not complete."""
    names: list[str] = []
    for i in range(most):
        try:
            names += _scan_one(f)
        except Exception:
            if i == 0:
                raise
            break  # the legacy layout's raw tensor bytes follow its pickles
    return names


def _scan_one(f: IO[bytes]) -> list[str]:
    names: list[str] = []
    strings: list[str] = []  # strings pushed so far: STACK_GLOBAL takes the last two
    for op, arg, _ in pickletools.genops(f):
        if op.name in _STRING_OPS:
            strings.append(str(arg))
        elif op.name == "GLOBAL":
            names.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            names.append(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "STOP":
            return names
    raise EOFError("the pickle ended before its STOP opcode")


def _not_allowed(names: list[str]) -> list[str]:
    """`names` less those torch.load(weights_only=True) accepts, in order, without repeats."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:  # noqa: BLE001 — a private torch helper: name every global if it moved
        allowed = set()
    names = [n.replace("__builtin__.", "builtins.", 1) for n in names]  # protocol 2 spells builtins this way
    return list(dict.fromkeys(n for n in names if n not in allowed))


def _as_state_dict(obj: Any, p: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:  # {"state_dict": {...}, "epoch": 3} checkpoints
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"The weights file {str(p)!r} must hold a state dict (a non-empty mapping from parameter "
            f"names to tensors). Got {type(obj).__name__} instead."
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise ValueError(
            f"The weights file {str(p)!r} must map parameter names to tensors. Entry {bad[0]!r} holds "
            f"{type(obj[bad[0]]).__name__} instead."
        )
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
        raise ValueError(
            f"The 'path' parameter of load_state_dict must name a {SAFETENSORS_SUFFIXES[0]} file "
            f"(or {', '.join(TORCH_SUFFIXES)} loadable with weights_only=True). Got {p.name!r} instead."
        )
    return _as_state_dict(obj, p)


def state_dict_mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """A plain-English description of how ``state`` fails to fit ``model``, or None if it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        (k, tuple(expected[k].shape), tuple(state[k].shape))
        for k in expected
        if k in state and tuple(expected[k].shape) != tuple(state[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) of the model are missing from the weights, the first is {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} key(s) in the weights are not in the model, the first is {unexpected[0]!r}")
    if shapes:
        k, want, got = shapes[0]
        parts.append(
            f"{len(shapes)} shape mismatch(es), the first is {k!r}: the model expects {list(want)}, "
            f"the weights have {list(got)}"
        )
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
        raise ValueError(
            f"The 'model' parameter of apply_state_dict must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    if not isinstance(state, Mapping):
        raise ValueError(
            f"The 'state' parameter of apply_state_dict must be a mapping from names to tensors. "
            f"Got {type(state).__name__} instead."
        )
    problem = state_dict_mismatch(model, state)
    if problem:
        raise ValueError(f"The weights do not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)
    return model


def tensors_for_safetensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Each tensor of a state dict detached, on the CPU and contiguous, ready for safetensors' ``save``.

    Tied weights (one tensor under two names, e.g. a language model's input embeddings and output
    head) and views of one storage are copied, so each name is saved: safetensors refuses tensors
    that share memory. Loading the file into the model (``load_state_dict``) fills the one shared
    parameter from both names, so the weights stay tied.
    """
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


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
