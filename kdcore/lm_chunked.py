"""Token divergences from final hidden states and the output projection, chunk by chunk (METHODS.md §6).

A causal LM's logits are ``z = h·Wᵀ + b`` (final hidden state h [H], output projection W [V, H],
bias b [V] or none). ``hidden_divergence_loss`` takes (h, W, b) of both models instead of their
logits and returns exactly what ``kdcore.divergences.divergence_loss`` returns on the logits, for
every kind of ``kdcore.divergences.KINDS``, without ever building the [B, L, V] logits of either
model:

- only the counted positions (``mask``) are gathered, [N, H];
- they are processed ``chunk_rows`` at a time: per chunk the [c, V] logits of both models are
  computed, the divergence taken by the shared kernels (``kdcore._divergence_kernels``), and the
  chunk's logits freed;
- with a gradient, the chunk's gradient is taken at once, in the forward pass (a custom
  ``torch.autograd.Function``, as Liger's fused linear cross-entropy): the gradient of the loss
  with respect to the chunk's student logits [c, V] is turned into the gradients of the hidden
  states [c, Hs], head weight [V, Hs] and bias, and the [c, V] tensors are freed. The backward pass
  only scales these by the incoming gradient, so no chunk is kept and none is recomputed: peak
  memory is a handful of [chunk_rows, V] tensors, and no projection runs twice;
- the teacher side never has a gradient (its hidden states and head are detached, its logits
  computed under ``torch.no_grad``).

The student's projection runs in whatever precision the caller's autocast gives it (bf16 under bf16
autocast, like the model's own head); the teacher's runs outside autocast in its head's own dtype
(float32 logits from a float32 head: no bf16 copy of the teacher's [V, Ht] head is made). The
gradients of the student's head and hidden states are taken in the head's dtype and accumulated in
place. The divergence arithmetic is float32 (float64 if an input is float64) whatever the input dtype. ``hidden_token_losses`` gives a weighted sum of the divergence
and the hard-label cross-entropy from the same chunks, one projection per chunk for both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kdcore import _divergence_kernels as _k
from kdcore.divergences import _check_kind, _check_params, _kept_positions, _kind_params, _Options
from kdcore.dtypes import compute_dtype
from kdcore.validation import check_float_tensor, check_int_range, check_positive

Head = tuple[Tensor, "Tensor | None"]  # (weight [V, H], bias [V] or None)
AUTO_CHUNK_ELEMENTS = 2**20  # the automatic chunk: [rows, V] float32 intermediates of about 4 MiB
PARAMS = ("temperature", "beta", "alpha", "mu", "chunk_rows")  # the keyword **params of the losses below


def auto_chunk_rows(vocab: int) -> int:
    """Rows per chunk when the caller gives none: 2**20 logits (4 MiB of float32) per intermediate.

    Smaller than ``kdcore.divergences``' 64 MiB: a chunk here also holds both models' projections
    and the intermediates of its gradient. On CPU (bench/llm.py, vocabulary 32000: 32 rows) blocks
    this size are reused by the allocator alongside the models' activations, so the step's peak
    resident memory stays lower than with 16 MiB chunks (1756 against 1908 MiB) for a chunked
    divergence about 1.3 times as long (one GEMM of the head's gradient per chunk)."""
    return max(1, AUTO_CHUNK_ELEMENTS // vocab)


def hidden_divergence_loss(
    student_hidden: Tensor,
    student_head: Head,
    teacher_hidden: Tensor,
    teacher_head: Head,
    kind: str,
    *,
    mask: Tensor | None = None,
    **params: Any,
) -> Tensor:
    """Mean divergence of ``kind`` over the kept positions, from hidden states and heads (a scalar).

    Args:
        student_hidden: [B, L, Hs] final hidden states of the student (with its graph).
        student_head: (weight [V, Hs], bias [V] or None) of the student's output projection.
        teacher_hidden: [B, L, Ht] final hidden states of the teacher (never differentiated).
        teacher_head: (weight [Vt, Ht], bias [Vt] or None); Vt = V except for kind "uld".
        kind: one of ``kdcore.divergences.KINDS``.
        mask: bool (or 0/1) [B, L], True where a position counts; None: every position.
        **params: ``temperature``, ``beta``, ``alpha``, ``mu`` as in ``kdcore.divergences.token_divergence``
            (same defaults), and ``chunk_rows``: positions per chunk (≥ 1); None (the default): about
            4 MiB per [rows, V] float32 tensor.

    Equals ``divergence_loss(h_s·W_sᵀ + b_s, h_t·W_tᵀ + b_t, kind, mask=mask, ...)``.
    """
    _check_params(params, ("mask",) + PARAMS, where="hidden_divergence_loss")
    loss, _ = _losses(student_hidden, student_head, teacher_hidden, teacher_head, kind, mask, None, params)
    return loss


def hidden_token_losses(
    student_hidden: Tensor,
    student_head: Head,
    teacher_hidden: Tensor,
    teacher_head: Head,
    kind: str,
    *,
    labels: Tensor,
    div_weight: float = 1.0,
    ce_weight: float = 1.0,
    **params: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, divergence, cross-entropy) over the positions whose label [B, L] is not -100, in one pass.

    The divergence is ``hidden_divergence_loss`` with ``mask = labels != -100``; the cross-entropy
    is the student's next-token CE at T = 1, ``F.cross_entropy(logits, labels, ignore_index=-100)``;
    loss = div_weight · divergence + ce_weight · CE carries the gradient, the two parts are detached.
    ``**params`` as in ``hidden_divergence_loss``.
    """
    where = "hidden_token_losses"
    _check_params(params, ("labels", "div_weight", "ce_weight") + PARAMS, where=where)
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"The 'labels' argument of {where} must be an integer torch.Tensor [B, L] (-100 where a "
            f"position does not count). Got {type(labels).__name__ if not isinstance(labels, Tensor) else labels.dtype}."
        )
    weights = (float(div_weight), float(ce_weight))
    loss, values = _losses(
        student_hidden, student_head, teacher_hidden, teacher_head, kind, None, labels, params, weights
    )
    means = values.mean(0)  # [2]
    return loss, means[0], means[1]


def _losses(
    s_hidden: Any,
    s_head: Any,
    t_hidden: Any,
    t_head: Any,
    kind: Any,
    mask: Any,
    labels: Any,
    params: dict[str, Any],
    weights: tuple[float, ...] = (1.0,),
) -> tuple[Tensor, Tensor]:
    """Validate, gather the kept rows and run the chunks; (weighted loss, values [N, 1 or 2] detached).

    ``params``: checked keywords of ``PARAMS``; ``weights``: (div_weight, ce_weight) with labels, else (1.0,)."""
    where = f"hidden_divergence_loss(kind={kind!r})"
    _check_kind(kind, where=where)
    chunk = params.pop("chunk_rows", None)
    options = _Options(**params)
    temperature = check_positive("temperature", options.temperature, where=where)
    kind_params = _kind_params(kind, options, where=where)
    ws, bs = _check_head("student", s_head, where)
    wt, bt = _check_head("teacher", t_head, where)
    _check_hidden(s_hidden, t_hidden, ws, wt, kind, where)
    lead = tuple(s_hidden.shape[:-1])
    keep = _kept_positions(mask, labels, lead, s_hidden.device, where=where, of="hidden states'").reshape(-1)  # [B·L]
    rows = keep.nonzero().squeeze(1)  # [N]
    hs = s_hidden.reshape(-1, s_hidden.shape[-1]).index_select(0, rows)  # [N, Hs]
    ht = t_hidden.detach().reshape(-1, t_hidden.shape[-1]).index_select(0, rows)  # [N, Ht]
    y = None if labels is None else labels.reshape(-1).index_select(0, rows.to(labels.device)).to(hs.device)  # [N]
    chunk = auto_chunk_rows(max(ws.shape[0], wt.shape[0])) if chunk is None else chunk
    chunk = check_int_range("chunk_rows", chunk, 1, 2**62, where=where)
    spec = _ChunkSpec(_k.KERNELS[kind], kind_params, temperature, compute_dtype(hs, ht, ws, wt), y is not None)
    t_head = (wt.detach(), None if bt is None else bt.detach())
    return _run_chunks(spec, hs, (ws, bs), ht, t_head, y, chunk, weights)


class _ChunkSpec:
    """What every chunk computes: the kernel and its parameters, T, the compute dtype, CE or not."""

    def __init__(self, kernel: Any, params: dict, temperature: float, dtype: torch.dtype, with_ce: bool) -> None:
        self.kernel, self.params, self.temperature, self.dtype, self.with_ce = (
            kernel,
            params,
            temperature,
            dtype,
            with_ce,
        )


def _run_chunks(
    spec: _ChunkSpec,
    hs: Tensor,
    s_head: Head,
    ht: Tensor,
    t_head: Head,
    y: Tensor | None,
    rows: int,
    weights: tuple[float, ...],
) -> tuple[Tensor, Tensor]:
    """(Σ_k weights[k] · mean of value k, with grad; values [N, 1 or 2] detached), ``rows`` rows per chunk."""
    ws, bs = s_head
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hs, ws, bs))
    if needs_grad:
        loss, values = _FusedChunks.apply(hs, ws, bs, ht, t_head, y, spec, rows, weights)
        return loss, values
    with torch.no_grad():
        values = torch.cat([_chunk(spec, hs[p], ws, bs, ht[p], *t_head, _rows(y, p)) for p in _pieces(hs, rows)])
    return (values.mean(0) * values.new_tensor(weights)).sum(), values


def _pieces(hs: Tensor, rows: int) -> list[slice]:
    return [slice(start, start + rows) for start in range(0, hs.shape[0], rows)]


def _rows(y: Tensor | None, piece: slice) -> Tensor | None:
    return None if y is None else y[piece]


class _FusedChunks(torch.autograd.Function):
    """The chunks' loss with its gradients taken in the forward pass, chunk by chunk (no [N, V] kept)."""

    @staticmethod
    def forward(
        ctx: Any, hs: Tensor, ws: Tensor, bs: Any, ht: Tensor, t_head: Head, y: Any, spec: Any, rows: int, weights: Any
    ) -> tuple[Tensor, Tensor]:
        n = hs.shape[0]
        w = torch.tensor(weights, dtype=spec.dtype, device=hs.device) / n  # d loss / d value, per row
        g_h = torch.zeros_like(hs)  # [N, Hs]
        g_w = torch.zeros_like(ws) if ctx.needs_input_grad[1] else None  # [V, Hs]
        g_b = torch.zeros_like(bs) if bs is not None and ctx.needs_input_grad[2] else None  # [V]
        values = []
        for piece in _pieces(hs, rows):
            with torch.enable_grad():
                z = _project(hs[piece], ws, bs).detach().requires_grad_()  # [c, V]
                v = _chunk_values(spec, z, ht[piece], *t_head, _rows(y, piece))  # [c, k]
                (g_z,) = torch.autograd.grad((v * w).sum(), z)  # [c, V]
            _head_grads(g_z, hs[piece], ws, (g_h[piece], g_w, g_b))
            values.append(v.detach())
            del z, v, g_z  # this chunk's [c, V] tensors and graph freed before the next chunk's
        out = torch.cat(values)  # [N, k]
        ctx.grads = (g_h, g_w, g_b)
        ctx.mark_non_differentiable(out)
        return (out.mean(0) * w.new_tensor(weights)).sum(), out

    @staticmethod
    def backward(ctx: Any, g_loss: Tensor, g_values: Any) -> tuple[Tensor | None, ...]:
        g_h, g_w, g_b = ctx.grads  # this Function's own tensors: scaled in place, no second [V, Hs] copy
        del ctx.grads
        scale = [None if g is None else g.mul_(g_loss.to(g.dtype)) for g in (g_h, g_w, g_b)]
        return (*scale, None, None, None, None, None, None)


def _head_grads(g_z: Tensor, h: Tensor, ws: Tensor, out: tuple[Tensor, Tensor | None, Tensor | None]) -> None:
    """One chunk's share of the gradients, written into out = (g_h [c, Hs] view, g_w [V, Hs], g_b [V]).

    g_z [c, V] (the loss's gradient w.r.t. the chunk's logits) is taken to the head's dtype once; the
    products run outside autocast in that dtype and g_w accumulates in place (``addmm_``): no [V, Hs]
    temporary per chunk and no cast copy of the head."""
    g_h, g_w, g_b = out
    with torch.autocast(g_z.device.type, enabled=False):
        g = g_z.to(ws.dtype)  # [c, V]
        g_h.copy_(g @ ws)  # [c, Hs]
        if g_w is not None:
            g_w.addmm_(g.t(), h.to(g_w.dtype))  # += gᵀ·h  [V, Hs]
        if g_b is not None:
            g_b += g.sum(0).to(g_b.dtype)


def _chunk(
    spec: _ChunkSpec, hs: Tensor, ws: Tensor, bs: Tensor | None, ht: Tensor, wt: Tensor, bt: Tensor | None, y: Any
) -> Tensor:
    """One chunk: hs [c, Hs], ht [c, Ht] -> [c, 1] divergence (or [c, 2] with the CE of labels y [c])."""
    return _chunk_values(spec, _project(hs, ws, bs), ht, wt, bt, y)


def _chunk_values(spec: _ChunkSpec, z_s: Tensor, ht: Tensor, wt: Tensor, bt: Tensor | None, y: Any) -> Tensor:
    """One chunk from the student's logits z_s [c, V]: [c, 1] divergence (or [c, 2] with the CE)."""
    with torch.no_grad(), torch.autocast(ht.device.type, enabled=False):
        z_t = _project(ht.to(wt.dtype), wt, bt)  # [c, Vt] in the head's dtype: no cast copy of [Vt, Ht]
        neg_t = bool(torch.isneginf(z_t).any())
    neg_s = bool(torch.isneginf(z_s).any())
    log_q = _k._log_probs(z_s, spec.temperature, spec.dtype, neg_s or neg_t)  # [c, V]
    log_p = _k._log_probs(z_t, spec.temperature, spec.dtype, neg_s or neg_t)  # [c, Vt]
    del z_t
    div = spec.kernel(log_q, log_p, **spec.params)  # [c]
    if not spec.with_ce:
        return div.unsqueeze(1)
    log_q1 = log_q if spec.temperature == 1.0 else torch.log_softmax(z_s.to(spec.dtype), dim=-1)  # [c, V]
    ce = -log_q1.gather(1, y.unsqueeze(1)).squeeze(1)  # [c]
    return torch.stack([div, ce], dim=1)


def _project(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """Logits h·wᵀ + b of one chunk, [c, V] (in the dtype autocast or the inputs give)."""
    return torch.nn.functional.linear(h, w, b)


def _check_head(who: str, head: Any, where: str) -> tuple[Tensor, Tensor | None]:
    """(weight [V, H], bias [V] or None) of an output projection, checked."""
    if not isinstance(head, (tuple, list)) or len(head) != 2:
        raise ValueError(
            f"The '{who}_head' argument of {where} must be a pair (weight [V, H], bias [V] or None), as "
            f"ModelAdapter.hidden_and_head returns. Got {type(head).__name__} instead."
        )
    w, b = head
    check_float_tensor(f"{who}_head weight", w, where=where)
    if w.dim() != 2:
        raise ValueError(f"The {who} head weight of {where} must be [V, H]. Got shape {tuple(w.shape)} instead.")
    if b is not None:
        check_float_tensor(f"{who}_head bias", b, where=where)
        if tuple(b.shape) != (w.shape[0],):
            raise ValueError(
                f"The {who} head bias of {where} must have shape [{w.shape[0]}] (one entry per vocabulary "
                f"entry). Got shape {tuple(b.shape)} instead."
            )
    return w, b


def _check_hidden(hs: Any, ht: Any, ws: Tensor, wt: Tensor, kind: str, where: str) -> None:
    """Hidden states [B, L, H] of both models that fit their heads and each other; vocabularies that match."""
    check_float_tensor("student_hidden", hs, where=where)
    check_float_tensor("teacher_hidden", ht, where=where)
    for who, h, w in (("student", hs, ws), ("teacher", ht, wt)):
        if h.dim() < 2 or h.shape[-1] != w.shape[1]:
            raise ValueError(
                f"The {who}_hidden of {where} must be [..., {w.shape[1]}] (the width its head takes). "
                f"Got shape {tuple(h.shape)} instead."
            )
    if hs.shape[:-1] != ht.shape[:-1]:
        raise ValueError(
            f"student_hidden and teacher_hidden of {where} must have the same leading (position) shape. "
            f"Got {tuple(hs.shape)} and {tuple(ht.shape)}."
        )
    if ws.shape[0] != wt.shape[0] and kind != "uld":
        raise ValueError(
            f"The vocabulary sizes of {where} differ: the student's head has {ws.shape[0]} rows, the "
            f"teacher's {wt.shape[0]}. Use kind='uld' (the cross-tokenizer divergence) for different tokenizers."
        )
