"""The dataset surface every part of the workbench uses (API.md "Models, pairs and data").

A `Dataset` names a task and hands out splits; a `SplitData` is a torch Dataset of
``(inputs, target)`` pairs that also exposes its whole tensors, so analyses can take a probe batch
without a DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Task = Literal["classification", "multilabel", "causal_lm", "encoder"]
SPLITS = ("train", "val", "test")
IGNORE_INDEX = -100  # next-token targets where nothing is predicted


@dataclass
class SplitData(torch.utils.data.Dataset):
    """One split, held in memory.

    inputs:  [N, C, H, W] float images | [N, F] float table features | [N, L] long token ids
    targets: [N] long class ids | [N, C] float multi-hot (multilabel) | [N, L] long next-token ids (-100: none)
    masks:   [N, C, H, W] bool or None — pixels of class c's shape in image n (generated images only)
    extras:  named per-sample tensors with leading dimension N (e.g. tinylang's true next-token
             distributions and position kinds)
    """

    inputs: Tensor
    targets: Tensor
    masks: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        if self.targets.shape[0] != n:
            raise ValueError(
                f"SplitData needs one target per input: got {n} inputs and {self.targets.shape[0]} targets."
            )
        if self.masks is not None and self.masks.shape[0] != n:
            raise ValueError(f"SplitData needs one mask per input: got {n} inputs and {self.masks.shape[0]} masks.")
        for k, v in self.extras.items():
            if v.shape[0] != n:
                raise ValueError(f"SplitData extra '{k}' has {v.shape[0]} rows for {n} inputs.")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.inputs[i], self.targets[i]

    def subset(self, n: int) -> SplitData:
        """The first n samples (deterministic probe batches)."""
        sl = slice(0, min(n, len(self)))
        return SplitData(
            self.inputs[sl],
            self.targets[sl],
            None if self.masks is None else self.masks[sl],
            {k: v[sl] for k, v in self.extras.items()},
        )


@dataclass
class Dataset:
    """A named task with train/val/test splits, built lazily and cached.

    name:        registry name ("digits", "shapes", ...) or the user's file name
    task:        "classification" | "multilabel" | "causal_lm" | "encoder" (inputs only: targets unused)
    build:       () -> {"train": SplitData, "val": SplitData, "test": SplitData}
    num_classes: classes (classification, multilabel), else None
    vocab_size:  tokens (causal_lm), else None
    class_names: display names of the classes, or None
    tokenizer:   causal_lm only: an object with encode(str) -> list[int], decode(ids) -> str and
                 tokens(ids) -> list[str] (display strings), optionally special_ids (ids of special
                 tokens), or None
    description: one sentence for the UI
    load_report: what loading the user's data skipped or computed (counts, statistics), or None
    """

    name: str
    task: Task
    build: Callable[[], dict[str, SplitData]] = field(repr=False)
    num_classes: int | None = None
    vocab_size: int | None = None
    class_names: list[str] | None = None
    tokenizer: object | None = field(default=None, repr=False)
    description: str = ""
    load_report: dict | None = None
    _splits: dict[str, SplitData] | None = field(default=None, init=False, repr=False)

    def split(self, name: str) -> SplitData:
        if name not in SPLITS:
            raise ValueError(f"The 'name' argument of Dataset.split must be one of {SPLITS}. Got {name!r} instead.")
        if self._splits is None:
            self._splits = self.build()
        return self._splits[name]

    @property
    def size(self) -> int:
        """Classes or vocabulary: the width of a model's output."""
        size = self.vocab_size if self.task == "causal_lm" else self.num_classes
        if size is None:
            field_name = "vocab_size" if self.task == "causal_lm" else "num_classes"
            raise ValueError(
                f"Dataset {self.name!r} ({self.task}) has no {field_name}: set it when building the Dataset."
            )
        return size
