"""The output head of a causal LM and the hidden states it reads, without computing the logits.

``kdcore.lm_chunked`` computes token divergences from (final hidden states, head weight, head
bias). This module finds a model's output projection (``get_output_embeddings()``, else a Linear
named ``lm_head``/``unembed``/``head``/``output``) and captures its input with a forward pre-hook
that stops the forward pass right there, so the [B, L, V] logits are never built. The hook lives
only inside ``hidden_before_head`` (registered in ``try``, removed in ``finally``) and records only
the calling thread's passes; the model is not changed.

It is only right when the head is the model's last operation (logits = head(hidden)). Models that
scale or soft-cap their logits after the head are refused by name (``logit_transform_problem``);
the job runner also checks, on a probe batch, that head(hidden) reproduces the model's logits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

_HEAD_NAMES = ("lm_head", "unembed", "head", "output", "embed_out")
# config fields of architectures that transform the logits after the head (Gemma 2/3, Cohere, Granite, ...)
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "lm_head_multiplier",
    "output_multiplier_scale",
    "mup_width_multiplier",
)


class _StopForward(Exception):
    """Raised by the pre-hook once the head's input is captured: the head itself never runs."""


def output_head(model: nn.Module) -> nn.Linear | None:
    """The model's output projection (an ``nn.Linear`` [V, H]), or None when none can be told."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        return head
    for name in _HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            return head
    return None


def logit_transform_problem(model: nn.Module) -> str | None:
    """Why head(hidden) is not the model's logits (a soft-cap or scale in its config), or None."""
    config = getattr(model, "config", None)
    for key in _LOGIT_TRANSFORMS:
        value = getattr(config, key, None)
        if value is not None and value != 1.0:
            return (
                f"{type(model).__name__} transforms its logits after the output head ({key}={value!r}), so "
                f"they cannot be computed from the hidden states and the head alone; the full logits are used."
            )
    return None


@contextmanager
def hidden_before_head(head: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Capture the input of ``head`` ([B, L, H], graph kept) and stop the forward pass there.

    Inside the block, run the model and call ``stopped(...)`` around it; afterwards the dict holds
    ``"hidden"``. The hook is removed on exit, even when the forward pass raises.
    """
    seen: dict[str, Tensor] = {}
    thread = threading.get_ident()

    def pre_hook(module: nn.Module, args: tuple) -> None:
        if threading.get_ident() != thread or not args or not isinstance(args[0], Tensor):
            return None
        seen["hidden"] = args[0]
        raise _StopForward

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield seen
    finally:
        handle.remove()


def run_until_head(forward: Callable[[], Any]) -> None:
    """Call ``forward()``, which ``hidden_before_head``'s hook stops at the head."""
    try:
        forward()
    except _StopForward:
        return
    raise ValueError(
        "The model's forward pass never called its output head, so its final hidden states could not "
        "be read; the full logits are used instead."
    )
