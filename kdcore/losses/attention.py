"""Attention distillation: conv attention transfer and transformer attention maps (METHODS.md §7).

- Attention transfer: Zagoruyko & Komodakis 2017, "Paying More Attention to Attention",
  arXiv 1612.03928.
- Transformer attention KL: MiniLM, Wang et al. 2020, arXiv 2002.10957.
- Transformer attention MSE: TinyBERT, Jiao et al. 2020, arXiv 1909.10351.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdcore.losses._kl import _kl_from_probs, _upcast
from kdcore.validation import check_finite_tensor, check_positive, check_same_batch, format_rows

_ROW_SUM_TOL = 1e-2  # attention rows must sum to 1 within this (bf16 rounding stays well inside)


# ---- conv feature maps --------------------------------------------------------------------------


def _spatial_map(fmap: Tensor, p: float) -> Tensor:
    """mean_c |F_c|^p, not normalised: [B, C, H, W] -> [B, H, W] (float32 or wider)."""
    (f,) = _upcast(fmap)
    return f.abs().pow(p).mean(dim=1)


def attention_map(fmap: Tensor, *, p: float = 2) -> Tensor:
    """The attention map a(F) = vec(mean_c |F_c|^p), L2-normalised per sample: [B, C, H, W] -> [B, H*W].

    A map that is all zero stays zero. Zagoruyko & Komodakis 2017, arXiv 1612.03928; METHODS.md §7.
    """
    where = "attention_map"
    f = check_finite_tensor("fmap", fmap, where=where, dims=4)
    p = check_positive("p", p, where=where)
    return F.normalize(_spatial_map(f, p).flatten(1), dim=1)


def attention_transfer_loss(student_fmap: Tensor, teacher_fmap: Tensor, *, p: float = 2) -> Tensor:
    """Attention transfer: mean over batch and positions of (a(F_s) − a(F_t))².

    Channel counts may differ. A student map of another spatial size is resized bilinearly
    (``align_corners=False``) to the teacher's H×W before the L2 normalisation. Zagoruyko &
    Komodakis 2017, arXiv 1612.03928; METHODS.md §7.
    """
    where = "attention_transfer_loss"
    fs = check_finite_tensor("student_fmap", student_fmap, where=where, dims=4)
    ft = check_finite_tensor("teacher_fmap", teacher_fmap, where=where, dims=4)
    check_same_batch(fs, ft, where=where, student_name="student_fmap", teacher_name="teacher_fmap")
    p = check_positive("p", p, where=where)
    ms, mt = _spatial_map(fs, p), _spatial_map(ft, p)  # [B, Hs, Ws], [B, Ht, Wt]
    if ms.shape[1:] != mt.shape[1:]:
        ms = F.interpolate(ms[:, None], size=tuple(mt.shape[1:]), mode="bilinear", align_corners=False)[:, 0]
    ms, mt = _upcast(ms, mt)
    a_s = F.normalize(ms.flatten(1), dim=1)  # [B, Ht*Wt]
    a_t = F.normalize(mt.flatten(1), dim=1)
    return (a_s - a_t).pow(2).mean()


# ---- transformer attention ----------------------------------------------------------------------


def _check_attention_pair(
    student_attn: Any, teacher_attn: Any, mask: Any, *, where: str, probabilities: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Validated (A_s, A_t, kept-row mask): [B, H, Lq, Lk] each (heads averaged when counts differ), [B, Lq]."""
    s = check_finite_tensor("student_attn", student_attn, where=where, dims=4)
    t = check_finite_tensor("teacher_attn", teacher_attn, where=where, dims=4)
    check_same_batch(s, t, where=where, student_name="student_attn", teacher_name="teacher_attn")
    if s.shape[2:] != t.shape[2:]:
        raise ValueError(
            f"The attention maps of {where} must cover the same query and key positions [B, H, L, L]. "
            f"Got {tuple(s.shape)} for the student and {tuple(t.shape)} for the teacher."
        )
    s, t = _upcast(s, t)
    if s.shape[1] != t.shape[1]:  # different head counts: compare the head-averaged maps
        s, t = s.mean(dim=1, keepdim=True), t.mean(dim=1, keepdim=True)
    B, Lq = s.shape[0], s.shape[2]
    if mask is None:
        keep = torch.ones(B, Lq, dtype=torch.bool, device=s.device)
    else:
        if not isinstance(mask, Tensor) or tuple(mask.shape) != (B, Lq):
            got = f"shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(
                f"The 'mask' argument of {where} must be a bool tensor of shape [{B}, {Lq}] (True for "
                f"the query rows that count). Got {got} instead."
            )
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"The 'mask' argument of {where} must hold only True/False (or 0/1). Got other values.")
        keep = mask.to(device=s.device, dtype=torch.bool)
        if not bool(keep.any()):
            raise ValueError(f"The 'mask' argument of {where} keeps no query row: at least one entry must be True.")
    if probabilities:
        for name, a in (("student_attn", s), ("teacher_attn", t)):
            if bool((a < 0).any()):
                raise ValueError(
                    f"The '{name}' argument of {where} must hold attention probabilities (>= 0, rows "
                    f"summing to 1, i.e. after softmax). Got negative values: pass probabilities, not scores."
                )
            off = ((a.sum(dim=-1) - 1).abs() > _ROW_SUM_TOL) & keep[:, None, :]  # [B, H, Lq]
            if bool(off.any()):
                b_idx = off.any(dim=(1, 2)).nonzero().flatten()
                raise ValueError(
                    f"The '{name}' argument of {where} must hold attention probabilities whose kept rows "
                    f"sum to 1 (after softmax). Samples {format_rows(b_idx)} have rows summing to e.g. "
                    f"{float(a.sum(dim=-1)[off][0]):.4g}: pass probabilities, not scores, or mask those rows."
                )
    return s, t, keep


def _masked_row_mean(per_row: Tensor, keep: Tensor) -> Tensor:
    """Mean of [B, H, Lq] values over batch, heads and the kept query rows ([B, Lq] mask)."""
    k = keep[:, None, :].expand_as(per_row)
    return torch.where(k, per_row, torch.zeros_like(per_row)).sum() / k.sum()


def attention_kl_loss(student_attn: Tensor, teacher_attn: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """MiniLM attention loss: mean over batch, heads and kept query rows of KL(A_t row ‖ A_s row).

    Inputs are attention probabilities [B, H, L, L]; ``mask`` [B, L] marks the query rows that count
    (all by default). Zeros in a teacher row (causal masking) add 0, never NaN. Differing head
    counts compare the head-averaged maps. Wang et al. 2020, arXiv 2002.10957; METHODS.md §7.
    """
    s, t, keep = _check_attention_pair(student_attn, teacher_attn, mask, where="attention_kl_loss", probabilities=True)
    return _masked_row_mean(_kl_from_probs(t, s), keep)  # [B, H, Lq] -> scalar


def attention_mse_loss(student_attn: Tensor, teacher_attn: Tensor, *, mask: Tensor | None = None) -> Tensor:
    """TinyBERT attention loss: mean squared difference of the attention matrices [B, H, L, L].

    Mean over batch, heads, kept query rows and key positions. Works on probabilities or on scores
    whose masked entries are set to 0 (as TinyBERT's code does); values must be finite. Differing
    head counts compare the head-averaged maps. Jiao et al. 2020, arXiv 1909.10351; METHODS.md §7.
    """
    s, t, keep = _check_attention_pair(
        student_attn, teacher_attn, mask, where="attention_mse_loss", probabilities=False
    )
    return _masked_row_mean((s - t).pow(2).mean(dim=-1), keep)
