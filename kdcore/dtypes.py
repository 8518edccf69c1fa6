"""The compute dtype of the project's numerics (METHODS.md conventions).

Losses, divergences and metrics compute in float32 or wider whatever the input dtype: bf16 and fp16
inputs are computed in float32, and float64 stays float64. One rule, one function.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compute_dtype"]


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32 or wider: the type promotion of float32 with every input's dtype.

    bf16/fp16/float32 inputs give float32; any float64 input gives float64.
    """
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype
