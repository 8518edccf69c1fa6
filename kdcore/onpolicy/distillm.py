"""DistiLLM's adaptive off-policy schedule and replay buffer (methods/15 §15.5; Ko et al., ICML 2024,
arXiv 2402.03898; jongwooko/distillm finetune.py, distillm/buffer.py).

Per step t (1-based of T), φ the student-data probability, u ~ U[0, 1) from numpy's Generator(seed):

    ρ_t = φ·(1 − t/T)  ("decreasing"; "constant" φ/2; "increasing" φ·t/T)
    u < ρ_t, or u < φ while the buffer holds < capacity → "generate"
    otherwise u < φ → "replay";  otherwise → "data"

φ starts at init_phi; `update(val_loss)` first records the reference L_ref (the evaluation before
training), then raises φ by `step` (≤ 1) and moves L_ref to L_val whenever L_val ≥ L_ref + loss_eps.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kdcore.validation import InvalidParameterError, check_range

REPLAY_RATIOS = ("decreasing", "constant", "increasing")


class DistiLLMSchedule:
    """φ, L_ref and the u-generator of a DistiLLM run (all checkpoint state: `state_dict`)."""

    def __init__(
        self,
        total_steps: int,
        *,
        init_phi: float = 0.0,
        step: float = 0.1,
        loss_eps: float = 0.1,
        capacity: int = 1000,
        replay_ratio: str = "decreasing",
        seed: int = 0,
    ) -> None:
        where = "DistiLLMSchedule"
        _check_int("total_steps", total_steps, 1, where)
        _check_int("capacity", capacity, 1, where)
        self.phi = check_range("init_phi", init_phi, 0.0, 1.0, where=where)
        if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise InvalidParameterError(f"The 'step' parameter of {where} must be a float > 0. Got {step!r} instead.")
        check_range("loss_eps", loss_eps, 0.0, math.inf, where=where)
        if replay_ratio not in REPLAY_RATIOS:
            raise InvalidParameterError(
                f"The 'replay_ratio' parameter of {where} must be one of {REPLAY_RATIOS}. Got {replay_ratio!r}."
            )
        self.total_steps, self.capacity, self.step, self.loss_eps = total_steps, capacity, float(step), loss_eps
        self.replay_ratio = replay_ratio
        self.ref: float | None = None  # L_ref: set by the first update (the evaluation before training)
        self.rng = np.random.default_rng(seed)

    def rho(self, t: int) -> float:
        """The generate probability once the buffer is full, at step t (1-based)."""
        _check_int("step", t, 1, "DistiLLMSchedule.source", high=self.total_steps)
        frac = t / self.total_steps
        return self.phi * {"decreasing": 1.0 - frac, "constant": 0.5, "increasing": frac}[self.replay_ratio]

    def branch(self, u: float, t: int, buffer_len: int) -> str:
        """The source for a given u (the rule without the draw)."""
        if u < self.rho(t) or (u < self.phi and buffer_len < self.capacity):
            return "generate"
        return "replay" if u < self.phi else "data"

    def source(self, t: int, buffer_len: int) -> str:
        """Draw u and return "generate" | "replay" | "data" for step t (1-based)."""
        return self.branch(float(self.rng.random()), t, buffer_len)

    def update(self, val_loss: float) -> float:
        """Record a validation loss (the first is the reference); returns φ."""
        v = float(val_loss)
        if not math.isfinite(v):
            raise InvalidParameterError(f"DistiLLMSchedule.update needs a finite validation loss. Got {val_loss!r}.")
        if self.ref is None:
            self.ref = v
        elif v >= self.ref + self.loss_eps:
            self.phi, self.ref = min(round(self.phi + self.step, 12), 1.0), v
        return self.phi

    def state_dict(self) -> dict[str, Any]:
        return {"phi": self.phi, "ref": self.ref, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.phi, self.ref = float(d["phi"]), d["ref"]
        self.rng.bit_generator.state = d["rng"]


class ReplayBuffer:
    """A FIFO of single sequences (capacity, oldest dropped); each item is {name: Tensor [L]}."""

    def __init__(self, capacity: int = 1000) -> None:
        _check_int("capacity", capacity, 1, "ReplayBuffer")
        self.capacity = capacity
        self.items: deque[dict[str, Tensor]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.items)

    def push(self, batch: dict[str, Tensor]) -> None:
        """Add every row of a batch {name: [B, ...]} (all with the same B), detached and on the CPU."""
        sizes = {k: v.shape[0] for k, v in batch.items()}
        if not batch or len(set(sizes.values())) != 1:
            raise InvalidParameterError(f"ReplayBuffer.push needs tensors with one batch size. Got sizes {sizes}.")
        for i in range(next(iter(sizes.values()))):
            self.items.append({k: v[i].detach().cpu() for k, v in batch.items()})

    def sample(self, batch_size: int, generator: np.random.Generator) -> dict[str, Tensor]:
        """batch_size sequences drawn uniformly without replacement, stacked {name: [batch_size, ...]}."""
        if batch_size > len(self.items) or batch_size < 1:
            raise InvalidParameterError(
                f"ReplayBuffer.sample needs 1 ≤ batch_size ≤ the sequences held ({len(self.items)}). "
                f"Got batch_size={batch_size}; generate more before replaying."
            )
        picks = generator.choice(len(self.items), size=batch_size, replace=False)
        rows = [self.items[int(i)] for i in picks]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "items": list(self.items)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.capacity = int(d["capacity"])
        self.items = deque(d["items"], maxlen=self.capacity)


def _check_int(name: str, value: Any, low: int, where: str, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        rng = f"[{low}, {high}]" if high is not None else f"≥ {low}"
        raise InvalidParameterError(f"The '{name}' parameter of {where} must be an integer {rng}. Got {value!r}.")
