"""A model split into stages by naming the submodules whose outputs end its blocks.

    split = StageSplit.of(model, ["conv1", "conv2"], example)   # checked on a probe batch
    logits, outs = split.forward_stages(x)        # outs[i]: the output of stage i+1 (graph kept)
    z = split.run_from(1, h, x)                   # the model with stage 1's output replaced by h

Stage i's block is everything the forward pass runs after stage i − 1's module and up to stage i's
module; the head is everything after the last stage. Any nn.Module works whose forward pass is a
chain through the named modules: each runs once per forward, in the order named, and everything
after a stage depends on the input only through that stage's output (no skip connection across a
cut). `StageSplit.of` checks all three on the example and refuses otherwise, naming the fix.
Hooks live only inside the context managers below (CONVENTIONS.md §5).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.base import eval_mode
from kdcore.validation import InvalidParameterError


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@contextmanager
def _recording(modules: dict[str, nn.Module], outs: dict[str, Tensor], order: list[str]) -> Iterator[None]:
    """Record each named module's output (graph kept) and the order the modules ran in."""

    def make(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            order.append(name)
            outs[name] = _first(out)

        return hook

    handles = [m.register_forward_hook(make(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _replacing(module: nn.Module, value: Tensor) -> Iterator[None]:
    """The module's output is replaced by `value` (the rest of the forward pass runs on it)."""
    handle = module.register_forward_hook(lambda _m, _i, _o: value)
    try:
        yield
    finally:
        handle.remove()


def _resolve(model: nn.Module, names: Sequence[str], who: str) -> dict[str, nn.Module]:
    """The named submodules; unknown names raise, listing the model's modules and the closest one."""
    known = dict(model.named_modules())
    out = {}
    for name in names:
        if not isinstance(name, str) or name not in known or name == "":
            options = [n for n in known if n]
            near = difflib.get_close_matches(str(name), options, n=1, cutoff=0.5)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            listed = ", ".join(options[:16]) + (" ..." if len(options) > 16 else "")
            raise InvalidParameterError(
                f"The {who} has no module {name!r} to end a stage at (its modules: {listed}).{hint} "
                f"Name the submodules whose outputs end the {who}'s blocks, in forward order."
            )
        out[name] = known[name]
    return out


@dataclass
class StageSplit:
    """A model and the names of its stage-ending modules (see the module docstring)."""

    model: nn.Module
    stages: tuple[str, ...]
    who: str = "model"

    @classmethod
    def of(cls, model: nn.Module, stages: Sequence[str], example: Tensor, who: str = "model") -> StageSplit:
        """A split checked on `example` ([B≥2, ...]): the modules exist, each runs once, in order,
        and every stage is a cut of the forward pass."""
        if not stages:
            raise InvalidParameterError(f"The {who} needs at least one stage: name its stage-ending modules.")
        if len(set(stages)) != len(stages):
            raise InvalidParameterError(f"The {who}'s stages repeat a module: {list(stages)}. Name each once.")
        split = cls(model, tuple(stages), who)
        _resolve(model, stages, who)
        with eval_mode(model, no_grad=True):  # the model's modes and weights are left as they were
            split._check_order(example)
            for i in range(len(stages)):
                split._check_cut(i, example)
        return split

    def _check_order(self, x: Tensor) -> None:
        outs: dict[str, Tensor] = {}
        order: list[str] = []
        with _recording(_resolve(self.model, self.stages, self.who), outs, order):
            logits = self.model(x)
        if not isinstance(_first(logits), Tensor):
            raise InvalidParameterError(
                f"The {self.who} returns {type(logits).__name__}, not logits: a stage split needs a model whose "
                f"forward returns a tensor of logits [B, C]."
            )
        if order != list(self.stages):
            raise InvalidParameterError(
                f"The {self.who}'s stage modules ran as {order} in a forward pass, not once each in the order "
                f"named {list(self.stages)}: name modules that each run once, in forward order."
            )
        for name in self.stages:
            if not isinstance(outs[name], Tensor):
                raise InvalidParameterError(
                    f"The {self.who}'s module {name!r} returns no tensor: it cannot end a stage."
                )

    def _check_cut(self, i: int, x: Tensor) -> None:
        """With stage i's output fixed, the logits must not depend on the input any more."""
        h = self.forward_stages(x)[1][i]
        a = self.run_from(i, h, x)
        b = self.run_from(i, h, torch.flip(x, dims=[0]) + 0.5)
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            raise InvalidParameterError(
                f"The {self.who}'s stage {self.stages[i]!r} is not a cut of its forward pass: with its output fixed, "
                f"the output still depends on the input (a skip connection or a second path crosses it). End the "
                f"stage at a module that every later computation goes through (e.g. a whole residual block)."
            )

    def forward_stages(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(logits, [output of each stage]) of one forward pass; the graph is kept."""
        outs: dict[str, Tensor] = {}
        with _recording(_resolve(self.model, self.stages, self.who), outs, []):
            logits = _first(self.model(x))
        return logits, [outs[n] for n in self.stages]

    def run_from(self, i: int, h: Tensor, x: Tensor) -> Tensor:
        """The logits of blocks i+2..n and the head on `h` in place of stage i+1's output (0-based `i`;
        `x` only drives the forward pass up to the cut: the result does not depend on it)."""
        module = _resolve(self.model, [self.stages[i]], self.who)[self.stages[i]]
        with _replacing(module, h):
            return _first(self.model(x))
