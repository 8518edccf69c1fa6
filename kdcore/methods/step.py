"""What a training step hands to a method, and what a method hands back.

A method's `step(batch, params) -> list[Component]`; a component is `(name, weight, value)` with
`value` a scalar tensor as the method defines it (T² included where METHODS.md says so) and
`weight` what multiplies it in the objective. Torch is imported only when a step runs, so reading
the method table (the CLI, config validation) stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

IGNORE_INDEX = -100  # causal LM targets: nothing is predicted at this position


@dataclass
class StepTensors:
    """What one training step hands to a method."""

    task: str  # "classification" | "multilabel" | "causal_lm" | "encoder"
    student_logits: Tensor  # [B, C] or [B, L, V]; encoder: the pooled embedding [B, H_s]
    teacher_logits: Tensor  # same shape (no graph)
    targets: Tensor  # [B] class ids | [B, C] multi-hot | [B, L] next ids (-100: none)
    student_feats: dict[str, Tensor] = field(default_factory=dict)  # layer -> [B, ...] with graph
    teacher_feats: dict[str, Tensor] = field(default_factory=dict)  # layer -> [B, ...] no graph
    projectors: nn.ModuleDict | None = None  # learned parts (Method.modules): layer_key(s) -> projector, ...
    student_attn: list[Tensor] | None = None  # per layer [B, H, L, L] with graph
    teacher_attn: list[Tensor] | None = None  # per layer [B, H, L, L]
    attention_mask: Tensor | None = None  # [B, L] 1 on real tokens (padded HF text and sentences), else None
    step: int = 0  # optimiser steps done before this one (0-based)
    epoch: int = 1  # the epoch this step belongs to (1-based: CTKD's λ_e, the warm-up w(e))
    total_steps: int = 1  # steps of the whole run
    epochs: int = 1  # epochs of the whole run
    extras: dict[str, Tensor] = field(default_factory=dict)  # method-specific tensors (hybrid: logits on ŷ)


Component = tuple[str, float, Any]  # (name, weight, scalar tensor)


def label_loss(task: str, logits: Tensor, targets: Tensor) -> Tensor:
    """The hard-label loss of a task: CE (classification), BCE-with-logits (multilabel),
    next-token CE over the positions whose target is not -100 (causal LM)."""
    import torch.nn.functional as F

    if task == "encoder":
        raise ValueError(
            "An 'encoder' task has no labels, so there is no hard-label loss: set ce_weight to 0 and "
            "use a distillation objective (embed_distill, feature_l2, attn_kl)."
        )
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    if task == "causal_lm":
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits.float(), targets)


def layer_key(layer: str) -> str:
    """A layer name as a ModuleDict key (keys may not contain '.')."""
    return layer.replace(".", "__")
