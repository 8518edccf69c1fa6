"""Masked generative distillation, MGD (methods/14-feature-and-weight.md §14.1).

Yang, Li, Shao, Shi, Yuan, Yuan, "Masked Generative Distillation", ECCV 2022, arXiv 2205.01529;
code github.com/yzd-v/MGD (`cls/mmcls/distillation/losses/mgd.py`). The student's feature, aligned
to the teacher's width by A (1×1 conv, or the identity), is masked at random and a small generator G
must rebuild the teacher's feature from what is left:

    M = 0 where R < λ, else 1          R ~ U[0, 1) i.i.d., spatial [N,1,H,W] or channel [N,C_t,1,1]
    L_MGD = α · (1/N) · Σ_{n,c,h,w} ( G(M ⊙ A(S)) − T )²          (a sum over C, H, W, never a mean)

`MGDHead(C_s, C_t)` owns A and G; it is trained with the student and dropped after training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.losses._kl import _upcast
from kdcore.validation import InvalidParameterError, check_finite_tensor, check_nonnegative, check_range

MASKS = ("channel", "spatial")  # channel: the authors' classification code; spatial: the paper, det/seg
REFERENCE_ELEMENTS = 512 * 7 * 7  # C·H·W of the authors' classification feature (ResNet-18 last stage)


class MGDHead(nn.Module):
    """A (1×1 conv C_s→C_t with bias, or the identity when C_s = C_t) and the generator
    G = conv3×3 → ReLU → conv3×3 (C_t→C_t, padding 1, biases), as in the authors' code."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        for name, c in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise InvalidParameterError(f"The '{name}' parameter of MGDHead must be an integer >= 1. Got {c!r}.")
        same = student_channels == teacher_channels
        self.align: nn.Module = nn.Identity() if same else nn.Conv2d(student_channels, teacher_channels, 1)
        self.generator = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1),
        )
        self.student_channels, self.teacher_channels = student_channels, teacher_channels


def mgd_alpha(alpha: float, teacher_shape: tuple[int, ...]) -> float:
    """α rescaled to keep the authors' per-element weight on a smaller feature (§14.1, "Tiny"):
    α·(512·7·7)/(C_t·H·W); teacher_shape is [N, C_t, H, W] or [C_t, H, W]."""
    c, h, w = (int(d) for d in tuple(teacher_shape)[-3:])
    return float(alpha) * REFERENCE_ELEMENTS / (c * h * w)


def mgd_mask(
    shape: tuple[int, int, int, int],
    lambda_mask: float,
    mask: str = "channel",
    *,
    rng: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The random mask of §14.1 for an aligned feature of shape [N, C_t, H, W]: 0 where R < λ, else 1,
    R ~ U[0, 1) drawn (on the CPU, from `rng` when given) per sample and channel ([N, C_t, 1, 1]) or per
    sample and position ([N, 1, H, W])."""
    where = "mgd_mask"
    lam = check_range("lambda_mask", lambda_mask, 0.0, 1.0, where=where, hint="λ is the fraction masked.")
    if mask not in MASKS:
        raise InvalidParameterError(f"The 'mask' parameter of {where} must be one of {MASKS}. Got {mask!r} instead.")
    n, c, h, w = shape
    size = (n, c, 1, 1) if mask == "channel" else (n, 1, h, w)
    r = torch.rand(size, generator=rng)
    return (r >= lam).float().to(device if device is not None else "cpu")


def mgd_loss(
    student_feat: Tensor,
    teacher_feat: Tensor,
    generator: Callable[[Tensor], Tensor],
    align: Callable[[Tensor], Tensor] | None = None,
    *,
    alpha: float = 7e-5,
    lambda_mask: float = 0.15,
    mask: str = "channel",
    mask_tensor: Tensor | None = None,
    rng: torch.Generator | None = None,
) -> Tensor:
    """L_MGD = α·(1/N)·Σ (G(M ⊙ A(S)) − T)² (§14.1): S student [N, C_s, H, W], T teacher [N, C_t, H, W].

    `align` is A (None: the identity, needs C_s = C_t); the mask is `mask_tensor` when given
    ([N, 1, H, W] spatial or [N, C_t, 1, 1] channel, values in {0, 1}), else drawn by `mgd_mask`
    with `rng`. Returns a scalar (float32 or wider).
    """
    where = "mgd_loss"
    s, t = _check_features(student_feat, teacher_feat, where)
    alpha = check_nonnegative("alpha", alpha, where=where)
    a = s if align is None else align(s)  # [N, C_t, H, W]: alignment happens before masking
    if a.shape != t.shape:
        fix = "pass align=MGDHead(C_s, C_t).align" if align is None else "build align for these widths"
        raise InvalidParameterError(
            f"The aligned student feature of {where} has shape {tuple(a.shape)} but the teacher feature has "
            f"{tuple(t.shape)}: {fix}."
        )
    if mask_tensor is None:
        m = mgd_mask(tuple(t.shape), lambda_mask, mask, rng=rng, device=t.device)  # type: ignore[arg-type]
    else:
        m = _check_mask(mask_tensor, tuple(t.shape), mask, where).to(t.device)
    gen = generator(a * m.to(a.dtype))  # [N, C_t, H, W]
    g, tt = _upcast(gen, t)
    return alpha * (g - tt).pow(2).sum() / t.shape[0]


def _check_features(student_feat: Any, teacher_feat: Any, where: str) -> tuple[Tensor, Tensor]:
    s = check_finite_tensor("student_feat", student_feat, where=where, dims=4)
    t = check_finite_tensor("teacher_feat", teacher_feat, where=where, dims=4)
    if (s.shape[0], *s.shape[2:]) != (t.shape[0], *t.shape[2:]):
        raise InvalidParameterError(
            f"student_feat and teacher_feat of {where} must share N, H and W (only channels may differ). Got "
            f"{tuple(s.shape)} for the student and {tuple(t.shape)} for the teacher: map layers of the same "
            f"resolution (MGD does not resize)."
        )
    return s, t


def _check_mask(mask_tensor: Any, shape: tuple[int, ...], mask: str, where: str) -> Tensor:
    if mask not in MASKS:
        raise InvalidParameterError(f"The 'mask' parameter of {where} must be one of {MASKS}. Got {mask!r} instead.")
    n, c, h, w = shape
    want = (n, c, 1, 1) if mask == "channel" else (n, 1, h, w)
    if not isinstance(mask_tensor, Tensor) or tuple(mask_tensor.shape) != want:
        got = tuple(mask_tensor.shape) if isinstance(mask_tensor, Tensor) else type(mask_tensor).__name__
        raise InvalidParameterError(f"The 'mask_tensor' of {where} ({mask} mask) must have shape {want}. Got {got}.")
    if not bool(((mask_tensor == 0) | (mask_tensor == 1)).all()):
        raise InvalidParameterError(f"The 'mask_tensor' of {where} must hold only 0 and 1.")
    return mask_tensor.float()
