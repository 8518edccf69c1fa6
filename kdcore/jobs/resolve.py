"""What a job runs on: its pair (from the pair registry or a "module:factory"), its device, and
the facts recorded with a run (device label, library versions, host)."""

from __future__ import annotations

import platform
import socket

import numpy as np
import torch

from kdcore.adapters.base import ModelAdapter
from kdcore.pair_registry import resolve_pair as _registry_resolve_pair
from kdcore.pairs import Pair


def resolve_pair(name: str) -> Pair:
    """A Pair from its name: a pair registered in `kdcore.pairs` (sample_models registers its own,
    a user's package through the `kdworkbench.pairs` entry point), or "package.module:factory"
    returning a Pair. An unknown name lists the registered pairs and the closest match."""
    return _registry_resolve_pair(name)


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' (an error when no GPU is present) or 'auto' (cuda when present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "The 'device' parameter is 'cuda', but no CUDA GPU is available here. "
            "Use device 'cpu', or 'auto' to take a GPU only when present."
        )
    return torch.device(device)


def library_versions() -> dict:
    """Versions recorded with each run (python, torch, numpy, kdcore, platform, cuda)."""
    import kdcore

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "kdcore": getattr(kdcore, "__version__", "?"),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
    }


def device_label(device: torch.device) -> str:
    """'cpu', or 'cuda:I (GPU name)'."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def hostname() -> str:
    return socket.gethostname()


def model_device(adapter: ModelAdapter) -> torch.device:
    """The device of an adapter's first parameter (cpu for a model without any)."""
    try:
        return next(adapter.model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def adapter_to(adapter: ModelAdapter, device: torch.device) -> ModelAdapter:
    """The adapter moved to `device` (adapters whose .to returns None move in place)."""
    moved = adapter.to(device)
    return adapter if moved is None else moved
