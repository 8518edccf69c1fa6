"""The paced pool of a curriculum run (methods/13 §13.3b): the training samples ordered by the
teacher's difficulty, and at iteration t the first ⌈N·g(t)⌉ of them, from which each batch is drawn.

    pool = PacedPool.build(teacher_logits, labels, params, seed)   # params of the 'curriculum' entry
    idx = pool.draw(t, batch_size, generator)                      # [B] indices into the training set

A batch is B distinct samples drawn uniformly from the pool (the whole pool, shuffled, when it holds
fewer than B). The order: "easy" (`curriculum_order`, easiest first, class-balanced by default),
"anti" (its reverse) or "random" (a permutation seeded by the job's seed) — the paper's controls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kdcore.losses import curriculum_order, pool_size


@dataclass(frozen=True)
class PacedPool:
    """Ordered training indices and the pacing function g(t) = min(start·inc^⌊t/step⌋, 1)."""

    order: Tensor  # [N] long: training-set indices, first in the curriculum first
    start: float = 0.04
    inc: float = 1.9
    step: int = 100

    @classmethod
    def build(cls, teacher_logits: Tensor, labels: Tensor, params: dict, seed: int) -> PacedPool:
        """teacher_logits [N, C] and labels [N] of the training set; params of the curriculum entry."""
        kind = params["order"]
        if kind == "random":
            gen = torch.Generator().manual_seed(int(seed) % 2**63)
            order = torch.randperm(labels.shape[0], generator=gen)
        else:
            order = curriculum_order(teacher_logits.detach().cpu(), labels.cpu(), balance=bool(params["balance"]))
            order = order.flip(0) if kind == "anti" else order
        return cls(order.long(), float(params["start"]), float(params["inc"]), int(params["step"]))

    def size(self, t: int) -> int:
        """How many samples the pool holds at iteration t (0-based)."""
        return pool_size(t, int(self.order.shape[0]), self.start, self.inc, self.step)

    def draw(self, t: int, batch_size: int, gen: torch.Generator) -> Tensor:
        """[min(B, pool)] training indices for iteration t, uniform over the pool without replacement."""
        n = self.size(t)
        pick = torch.randperm(n, generator=gen)[:batch_size]
        return self.order[pick]
