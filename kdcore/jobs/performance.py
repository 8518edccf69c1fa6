"""A job's memory and speed options (issue #13 item 4): precision, gradient accumulation, gradient
checkpointing, the attention implementation and the chunked token divergences.

- ``precision``: "fp32", or "bf16" (``torch.autocast`` on CPU or CUDA around the forward passes and
  the loss; parameters, gradients and optimizer state stay float32, and the loss arithmetic is
  float32 because every divergence and CE upcasts). Refused on a device without bf16 support.
- ``grad_accum``: each step's batch is split into this many micro-batches (``split_batch``), each
  backward pass adds (micro-batch loss × its share of the step's units) to the gradients, one
  optimizer step follows. The unit is what the objective's loss averages over (kdcore.jobs.step_weights):
  samples, or the kept token positions of token-mean causal-LM objectives (targets ≠ -100, attention
  mask), so the update is exactly the whole batch's at once, padding and masked prompts included,
  with a micro-batch's activation memory.
- ``grad_checkpointing``: ``gradient_checkpointing_enable()`` on the job's own student clone
  (Hugging Face models; others are refused before anything runs).
- ``attn_implementation``: "auto" (SDPA unless the objective needs attention weights), "eager" or
  "sdpa", set on the job's own copies of Hugging Face models (the teacher's copy shares its weights,
  which the job never writes); a model the app caches is never changed.
- ``lm_chunked``: causal-LM token objectives computed from hidden states and output heads chunk by
  chunk (``kdcore.lm_chunked``) when both adapters support it; otherwise the full logits.

Every function here is pure or acts on the job's own copies.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter
from kdcore.jobs.perf_options import ATTN_IMPLEMENTATIONS, PRECISIONS, option_problems

__all__ = ["ATTN_IMPLEMENTATIONS", "PRECISIONS", "option_problems"]


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on ``device`` (CUDA: the GPU supports bf16; CPU: always)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward/loss scope of ``precision``: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def attention_choice(option: str, needs_attention: bool) -> str:
    """The implementation to use: "auto" is SDPA unless attention weights are needed."""
    if option == "auto":
        return "eager" if needs_attention else "sdpa"
    return option


def _is_hf(model: nn.Module) -> bool:
    return callable(getattr(model, "set_attn_implementation", None)) and hasattr(model, "config")


def run_problems(
    cfg: Any, student: ModelAdapter, teacher: ModelAdapter, device: torch.device, needs_attn: bool
) -> list[str]:
    """Reasons to refuse the run's memory and speed options on this pair and device (before it runs)."""
    p: list[str] = []
    if cfg.precision == "bf16" and not bf16_supported(device):
        p.append(
            f"'precision: bf16' needs a device with bf16 support; {device} has none. Use precision 'fp32' "
            f"(or a GPU with bf16, e.g. Ampere or newer)."
        )
    if cfg.grad_checkpointing and not getattr(student.model, "supports_gradient_checkpointing", False):
        p.append(
            f"'grad_checkpointing' needs a model with gradient_checkpointing_enable() (a Hugging Face model "
            f"that supports it); the student {student.name} ({type(student.model).__name__}) has none. "
            f"Set grad_checkpointing to false."
        )
    if cfg.attn_implementation == "sdpa" and needs_attn:
        p.append(
            "'attn_implementation: sdpa' returns no attention weights, which the objective needs; use 'eager' or 'auto'."
        )
    return p


def weight_sharing_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with ``model`` (and copies its
    config), so its settings can change without touching the original. Its weights must stay read-only."""
    memo: dict[int, Any] = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def set_attention(adapter: ModelAdapter, implementation: str, *, own: bool) -> ModelAdapter:
    """An adapter whose Hugging Face model uses ``implementation`` ("eager"/"sdpa"); other models are
    returned as they are. ``own=True``: the adapter's model is the job's own copy and is set in place;
    else a weight-sharing copy is set."""
    model = adapter.model
    if not _is_hf(model) or getattr(model.config, "_attn_implementation", None) == implementation:
        return adapter
    target = model if own else weight_sharing_copy(model)
    target.set_attn_implementation(implementation)  # type: ignore[operator]
    return adapter if own else adapter._with_model(target)


def enable_grad_checkpointing(student: ModelAdapter) -> None:
    """Gradient checkpointing on the job's own student clone (non-reentrant; transformers ≥ 5 calls it
    activation checkpointing)."""
    model: Any = student.model
    if callable(getattr(model, "activation_checkpointing_enable", None)):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def split_batch(idx: Tensor, grad_accum: int) -> list[Tensor]:
    """The step's sample indices in ``grad_accum`` micro-batches (fewer when the batch has fewer rows); the
    job weights each by its share of the step's units (kdcore.jobs.step_weights.unit_weights)."""
    return list(idx.tensor_split(min(grad_accum, idx.shape[0])))


def configure_models(
    cfg: Any, teacher: ModelAdapter, student: ModelAdapter, needs_attn: bool
) -> tuple[ModelAdapter, ModelAdapter]:
    """(teacher, student) with the job's attention implementation and gradient checkpointing.

    ``student`` must be the job's own clone (it is set in place); the teacher may be shared, so it
    gets a weight-sharing copy when its attention implementation changes.
    """
    implementation = attention_choice(cfg.attn_implementation, needs_attn)
    student = set_attention(student, implementation, own=True)
    teacher = set_attention(teacher, implementation, own=False)
    if cfg.grad_checkpointing:
        enable_grad_checkpointing(student)
    return teacher, student
