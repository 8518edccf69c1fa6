"""A tiny module:factory pair on a generated table, for jobs on a user's own factories
(kdcore.jobs.factory_config): importable as 'tests.helpers.factory_pairs:make_teacher' (4 residual blocks),
'...:make_student' (2 blocks of the same width: a shallower copy, so from_teacher fits) and
'...:make_wide_student' (2 wider blocks: from_teacher does not fit). `write_factory_pair(root)` saves
seeded weights as safetensors and a 3-class table of 4 numeric features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

TEACHER = "tests.helpers.factory_pairs:make_teacher"
STUDENT = "tests.helpers.factory_pairs:make_student"
WIDE_STUDENT = "tests.helpers.factory_pairs:make_wide_student"
FEATURES, CLASSES = 4, 3


class Block(nn.Module):
    """x + relu(W x + b)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):  # [B, W] -> [B, W]
        return x + torch.relu(self.fc(x))


class TableNet(nn.Module):
    def __init__(self, depth: int, width: int = 8):
        super().__init__()
        self.stem = nn.Linear(FEATURES, width)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x):  # [B, FEATURES] -> [B, CLASSES]
        return self.head(self.blocks(self.stem(x)))


def make_teacher() -> nn.Module:
    return TableNet(4)


def make_student() -> nn.Module:
    return TableNet(2)


def make_wide_student() -> nn.Module:
    return TableNet(2, width=12)


def write_factory_pair(root: Path, rows: int = 120) -> dict[str, Path]:
    """{"teacher", "student", "wide", "table"}: seeded weights (.safetensors) and a table whose class is
    the argmax of a fixed linear map of its features."""
    from safetensors.torch import save_file

    out = {}
    for name, factory, seed in (
        ("teacher", make_teacher, 1),
        ("student", make_student, 2),
        ("wide", make_wide_student, 3),
    ):
        torch.manual_seed(seed)
        out[name] = root / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in factory().state_dict().items()}, str(out[name]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, FEATURES))  # [N, F]
    labels = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(1)  # [N]
    out["table"] = root / "table.csv"
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": labels}).to_csv(out["table"], index=False)
    return out
