"""Chunking over positions, so memory for the probabilities stays bounded (METHODS.md §6).

Positions are flattened to rows, [N, V], and processed ``chunk_rows`` at a time: only one chunk's
[chunk, V] float32 intermediates exist at once. When a gradient is needed and there is more than
one chunk, each chunk runs under ``torch.utils.checkpoint`` (non-reentrant): autograd keeps only
the chunk's input views and recomputes its intermediates during backward, so backward memory is
bounded by a chunk too, at the cost of computing each chunk's forward twice.
Every row is computed by the same arithmetic whatever the chunking, so chunked equals unchunked.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from kdcore._divergence_kernels import _log_probs
from kdcore.dtypes import compute_dtype

# The automatic chunk: rows such that one [rows, V] float32 intermediate is about 64 MiB.
AUTO_CHUNK_ELEMENTS = 2**24


def auto_chunk_rows(vocab: int) -> int:
    """Rows per chunk when the caller gives none: 2**24 elements (64 MiB of float32) per intermediate."""
    return max(1, AUTO_CHUNK_ELEMENTS // vocab)


def _chunk_values(
    kernel: Callable[..., Tensor],
    student: Tensor,
    teacher: Tensor,
    rows: Tensor | None,
    temperature: float,
    dtype: torch.dtype,
    neg_inf: bool,
    params: dict,
) -> Tensor:
    """The divergence of one chunk: student [c, Vs], teacher [c, Vt] -> [c] (or [len(rows)])."""
    if rows is not None:
        student, teacher = student.index_select(0, rows), teacher.index_select(0, rows)
    log_q = _log_probs(student, temperature, dtype, neg_inf)  # [c, Vs]
    log_p = _log_probs(teacher, temperature, dtype, neg_inf)  # [c, Vt]
    return kernel(log_q, log_p, **params)  # [c]


def per_position(
    kernel: Callable[..., Tensor],
    student: Tensor,
    teacher: Tensor,
    *,
    temperature: float,
    chunk_rows: int,
    keep: Tensor | None = None,
    neg_inf: bool = True,
    params: dict,
) -> Tensor:
    """Kernel values for every row of student [N, Vs] / teacher [N, Vt], or for the rows ``keep``
    [N] (bool) marks; rows left out are never computed. Returns [N] or [number kept].
    ``neg_inf=False`` promises that no computed logit is -inf (the clamp is skipped)."""
    dtype = compute_dtype(student, teacher)
    n = student.shape[0]
    needs_grad = torch.is_grad_enabled() and (student.requires_grad or teacher.requires_grad)
    use_checkpoint = needs_grad and n > chunk_rows
    keeps = keep.split(chunk_rows) if keep is not None else [None] * ((n + chunk_rows - 1) // chunk_rows)
    values = []
    for s_chunk, t_chunk, k_chunk in zip(student.split(chunk_rows), teacher.split(chunk_rows), keeps):
        rows = None
        if k_chunk is not None and not bool(k_chunk.all()):
            rows = k_chunk.nonzero().squeeze(1)  # [kept in chunk]
            if rows.numel() == 0:
                continue
        args = (kernel, s_chunk, t_chunk, rows, temperature, dtype, neg_inf, params)
        if use_checkpoint:
            values.append(checkpoint(_chunk_values, *args, use_reentrant=False, preserve_rng_state=False))
        else:
            values.append(_chunk_values(*args))
    return torch.cat(values) if len(values) > 1 else values[0]
